"""`dunning forewarn`: tomorrow's plan, e-mailed to an operator (run it every morning
from cron or the Kubernetes CronJob `deploy/kubernetes/forewarn.yaml`)."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli.app import app
from worker.cli.common import err, open_log, out, profiles_or_exit
from worker.settings import Settings


@app.command()
def forewarn(
    to: Annotated[str, typer.Option("--to", help="The operator's email address.")],
) -> None:
    """E-mail tomorrow's planned reminders (UTC day) by channel and profile, from the agenda
    and what the contact log knows now, through DUNNING_SMTP_URL."""
    from worker import wiring
    from worker.events import EventError, normalize_address
    from worker.pipeline import forecast
    from worker.queue.agenda import Agenda

    try:
        kind, address = normalize_address(to)
        if kind != "email":
            raise EventError("an email address expected")
    except EventError as error:
        err.print(f"--to: {error}", markup=False)
        raise typer.Exit(2) from None
    settings = Settings.from_env()
    log = open_log()
    client = wiring.redis_for(settings)
    try:
        day = forecast.send_forewarning(wiring.channels(settings), log, profiles_or_exit(), Agenda(client),
                                        address, wiring.clock(settings, client).now())
    except forecast.ForewarnError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(3) from None
    finally:
        client.close()
        log.engine.dispose()
    out.print(f"the plan for {day} was e-mailed to {address}", markup=False)
