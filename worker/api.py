"""The Python API for billing systems: `worker.enqueue(jobs)`, and the events `worker.paid`,
`worker.write_off`, `worker.dispute`, `worker.promise`, `worker.optout`, `worker.cease`
(entry points, like the CLI: they read the clock and the settings)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from worker import wiring
from worker.events import Applied, Events
from worker.jobs.contract import Job
from worker.jobs.intake import OUTAGES, Intake, Unavailable, as_parsed, submit
from worker.policy import profiles
from worker.queue.agenda import Agenda
from worker.settings import Settings

__all__ = ["Intake", "Unavailable", "cease", "dispute", "enqueue", "optout", "paid", "promise", "write_off"]


def enqueue(jobs: Iterable[Job | dict[str, Any]], settings: Settings | None = None) -> Intake:
    """Queue reminder jobs (models or JSON-like dicts) for the worker configured by the
    environment. Invalid jobs come back in `Intake.rejected` with their errors and are
    kept as dead letters; a job_id seen before is listed in `Intake.duplicates`.

    Raises `Unavailable` when Redis or the database is away: the jobs in its
    `intake.unavailable` were not accepted; call again with the same jobs.
    """
    settings = settings or Settings.from_env()
    known = profiles(settings.profile_dir)
    parsed = as_parsed(jobs, known)
    broker = wiring.broker(settings)
    try:
        log = wiring.log(settings)
    except OUTAGES as error:
        broker.close()
        raise Unavailable(Intake(unavailable=[p.job_id or p.where for p in parsed],
                                 reason=f"the contact log is unavailable ({type(error).__name__})")) from None
    try:
        result = submit(parsed, wiring.books(log).jobs, known, broker, datetime.now(UTC))
    finally:
        broker.close()
        log.engine.dispose()
    if result.unavailable:
        raise Unavailable(result)
    return result


T = TypeVar("T")


def _with_events(settings: Settings | None, act: Callable[[Events, datetime], T]) -> T:
    settings = settings or Settings.from_env()
    log = wiring.log(settings)
    client = wiring.redis_for(settings)
    try:
        return act(Events(log, Agenda(client)), datetime.now(UTC))
    finally:
        client.close()
        log.engine.dispose()


def paid(invoice_id: str, amount: Decimal | str | None = None, *, by: str = "api",
         settings: Settings | None = None) -> Applied:
    """The invoice was paid (in full, or `amount` of it): pending reminders are cancelled,
    and none is sent after this returns. Raises `EventError` naming a bad field."""
    return _with_events(settings, lambda events, now: events.paid(invoice_id, now, by=by, amount=amount))


def write_off(invoice_id: str, *, note: str | None = None, by: str = "api",
              settings: Settings | None = None) -> Applied:
    """The creditor gave up on the invoice: pending reminders are cancelled, none is sent after this returns."""
    return _with_events(settings, lambda events, now: events.write_off(invoice_id, now, by=by, note=note))


def dispute(invoice_id: str, *, resolved: bool = False, note: str | None = None, by: str = "api",
            settings: Settings | None = None) -> Applied:
    """The debtor disputes the invoice (reminders pause), or the dispute is resolved (they resume)."""
    return _with_events(settings, lambda events, now: events.dispute(invoice_id, now, by=by, resolved=resolved,
                                                                     note=note))


def promise(invoice_id: str, until: date, *, by: str = "api", settings: Settings | None = None) -> Applied:
    """The debtor promised to pay by `until`: reminders pause until the day after."""
    return _with_events(settings, lambda events, now: events.promise(invoice_id, until, now, by=by))


def optout(address: str | None = None, *, account_id: str | None = None, channel: str | None = None,
           by: str = "api", settings: Settings | None = None) -> Applied:
    """Stop messages to an address, or (with `account_id` and `channel`) through a medium."""
    if address is None:
        if not account_id or not channel:
            raise ValueError("optout needs an address, or an account_id and a channel")
        return _with_events(settings, lambda events, now: events.optout_channel(account_id, channel, now, by=by))
    return _with_events(settings, lambda events, now: events.optout(address, now, by=by, account_id=account_id))


def cease(account_id: str, *, note: str | None = None, by: str = "api", settings: Settings | None = None) -> Applied:
    """A cease-communication request (or attorney representation) for an account."""
    return _with_events(settings, lambda events, now: events.cease(account_id, now, by=by, note=note))
