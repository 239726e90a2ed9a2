"""`dunning webhooks status|resume`: what the billing system is still to be told, and
sending to its endpoint again after it answered 410 Gone."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import typer

from worker.cli.app import webhooks_app
from worker.cli.common import By, err, open_books, out
from worker.settings import Settings


def _endpoint() -> str:
    url = Settings.from_env().webhook_url
    if url is None:
        err.print("DUNNING_WEBHOOK_URL is not set: no webhooks are sent", markup=False)
        raise typer.Exit(1)
    return url


@webhooks_app.command("status")
def webhooks_status() -> None:
    """The endpoint's host and whether it is stopped (410 Gone), and how many webhooks
    are pending, delivered, failed (given up after 3 days) or stopped."""
    from worker.webhooks.outbox import endpoint_host

    url, outbox = _endpoint(), open_books().outbox
    stopped = outbox.endpoint_stopped(url)
    out.print(f"endpoint: {endpoint_host(url)}: " + (f"stopped since {stopped.isoformat()[:19]} UTC (410 Gone); "
                                                    "`dunning webhooks resume` sends to it again"
                                                    if stopped else "sending"), markup=False)
    for state, count in outbox.webhook_counts().items():
        out.print(f"{state}: {count}", markup=False)


@webhooks_app.command("resume")
def webhooks_resume(by: By = None) -> None:
    """Send to the endpoint again after it answered 410 Gone (what was dropped meanwhile stays dropped)."""
    from worker.webhooks.outbox import endpoint_host

    url = _endpoint()
    if not open_books().outbox.resume_endpoint(url, datetime.now(UTC), by or f"cli:{getpass.getuser()}"):
        err.print(f"{endpoint_host(url)}: not stopped", markup=False)
        raise typer.Exit(1)
    out.print(f"{endpoint_host(url)}: sending again", markup=False)
