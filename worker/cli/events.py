"""What billing and people tell us: `paid`, `writeoff`, `dispute`, `promise`, `optout`, `cease`; an
operator's `pause` and `resume`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.app import app
from worker.cli.common import By, err, out
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.events import Applied, Events


@app.command()
def paid(
    invoice: Annotated[str, typer.Argument(help="The invoice id (invoice.id in the jobs).")],
    amount: Annotated[str | None, typer.Option(help="A partial payment: the amount paid (e.g. 1200.00).")] = None,
    by: By = None,
) -> None:
    """The invoice was paid: pending reminders are cancelled, nothing more is sent for it."""
    _event(lambda events, now, who: events.paid(invoice, now, by=who, amount=amount), by)


@app.command("writeoff")
def write_off(
    invoice: Annotated[str, typer.Argument(help="The invoice id.")],
    note: Annotated[str | None, typer.Option(help="Why it was written off (kept in the log).")] = None,
    by: By = None,
) -> None:
    """The invoice was written off: its cadence ends and its escalation, if any, closes."""
    _event(lambda events, now, who: events.write_off(invoice, now, by=who, note=note), by)


@app.command()
def dispute(
    invoice: Annotated[str, typer.Argument(help="The invoice id.")],
    resolved: Annotated[bool, typer.Option("--resolved", help="The dispute is resolved: reminders resume.")] = False,
    note: Annotated[str | None, typer.Option(help="What the dispute is about (kept in the log).")] = None,
    by: By = None,
) -> None:
    """The debtor disputes the invoice: reminders pause until `--resolved`."""
    _event(lambda events, now, who: events.dispute(invoice, now, by=who, resolved=resolved, note=note), by,
           then=None if resolved else f"when it is resolved: dunning dispute {invoice} --resolved")


@app.command()
def promise(
    invoice: Annotated[str, typer.Argument(help="The invoice id.")],
    until: Annotated[str, typer.Option("--until", help="The promised payment date, YYYY-MM-DD.")],
    by: By = None,
) -> None:
    """The debtor promised to pay by a date: reminders pause until the day after."""
    from datetime import date

    try:
        day = date.fromisoformat(until)
    except ValueError:
        err.print(f"--until: {until!r}; a date YYYY-MM-DD expected", markup=False)
        raise typer.Exit(1) from None
    _event(lambda events, now, who: events.promise(invoice, day, now, by=who), by)


@app.command()
def optout(
    address: Annotated[str | None, typer.Argument(help="An email address or an E.164 phone number.")] = None,
    account: Annotated[str | None, typer.Option(help="With --channel: the account that asked.")] = None,
    channel: Annotated[str | None, typer.Option(help="With --account: email, sms or voice.")] = None,
    by: By = None,
) -> None:
    """Stop messages to an address, or to an account through one channel (--account A --channel C)."""
    if address is not None and channel is None:
        _event(lambda events, now, who: events.optout(address, now, by=who, account_id=account), by)
    elif address is None and account and channel:
        _event(lambda events, now, who: events.optout_channel(account, channel, now, by=who), by)
    else:
        err.print("give an ADDRESS, or --account A --channel C", markup=False)
        raise typer.Exit(2)


@app.command()
def cease(
    account: Annotated[str, typer.Argument(help="The account id (debtor.account_id).")],
    note: Annotated[str | None, typer.Option(help="The request, e.g. 'letter of 2026-11-20'.")] = None,
    by: By = None,
) -> None:
    """A cease-communication request (or attorney representation): collection messages stop."""
    _event(lambda events, now, who: events.cease(account, now, by=who, note=note), by)


@app.command()
def pause(
    target: Annotated[str, typer.Argument(help="An invoice id, or account:ID for all of an account's invoices.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the log).")],
    by: By = None,
) -> None:
    """An operator's pause: nothing is sent and the pending steps wait until `resume`."""
    _event(lambda events, now, who: events.pause(target, now, by=who, reason=reason), by)


@app.command()
def resume(
    target: Annotated[str, typer.Argument(help="An invoice id, or account:ID.")],
    by: By = None,
) -> None:
    """End an operator's pause: the pending steps come due again."""
    _event(lambda events, now, who: events.pause(target, now, by=who, reason="", resume=True), by)


def _event(act: Callable[[Events, datetime, str], Applied], by: str | None, then: str | None = None) -> None:
    """Record one event with the wall clock and say what it did (and `then`, what to run
    next); a bad field, or an invoice the log has never seen, exits 1."""
    import getpass

    from worker import wiring
    from worker.events import EventError, Events
    from worker.queue.agenda import Agenda

    settings = Settings.from_env()
    log = wiring.log(settings)
    client = wiring.redis_for(settings)
    try:
        applied = act(Events(log, Agenda(client)), datetime.now(UTC), by or f"cli:{getpass.getuser()}")
    except EventError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None
    finally:
        client.close()
        log.engine.dispose()
    out.print(applied.summary + (f" ({applied.agenda})" if applied.agenda else ""), markup=False)
    if then:
        out.print(then, markup=False)

