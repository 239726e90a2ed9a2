"""`dunning records hold|release|show|erase|purge|export|rotate-key`: legal holds, erasure
requests, the purge of what has been kept long enough, subject-access exports and the
master key's rotation. Each is recorded in the contact log; a refused erasure exits 1."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.app import records_app
from worker.cli.common import By, err, open_log, out, profiles_or_exit
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.records.erasure import Answer, Records

Reason = Annotated[str, typer.Option("--reason", help="Why: a ticket, the request's reference (kept in the log).")]


def _by(by: str | None) -> str:
    return by or f"cli:{getpass.getuser()}"


def _records(with_redis: bool = False) -> Records:
    from worker import wiring
    from worker.queue.agenda import Agenda
    from worker.records.erasure import Records

    settings = Settings.from_env()
    log = open_log()
    books = wiring.books(log)
    agenda = broker = None
    if with_redis:
        broker = wiring.broker(settings)
        agenda = Agenda(wiring.redis_for(settings))
    return Records(log, books.records, books.jobs, agenda, broker, profiles_or_exit(), settings.retention_years)


def _target_or_exit(records: Records, identifier: str) -> tuple[str, str]:
    from worker.records.erasure import RecordsError

    try:
        return records.target(identifier)
    except RecordsError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None


@records_app.command("hold")
def records_hold(identifier: Annotated[str, typer.Argument(metavar="ACCOUNT|INVOICE")], reason: Reason,
                 by: By = None) -> None:
    """Put an account or an invoice on legal hold: nothing of it is erased or purged."""
    records = _records()
    _answer(lambda: records.hold(identifier, reason, datetime.now(UTC), by=_by(by)))


@records_app.command("release")
def records_release(identifier: Annotated[str, typer.Argument(metavar="ACCOUNT|INVOICE")],
                    reason: Annotated[str, typer.Option("--reason", help="Why it is released.")] = "",
                    by: By = None) -> None:
    """Release a legal hold (exit 1 if there was none)."""
    records = _records()
    _answer(lambda: records.release(identifier, reason, datetime.now(UTC), by=_by(by)))


def _answer(request: Callable[[], Answer]) -> None:
    """Carry out a records request: its answer on stdout (done, exit 0) or stderr (refused,
    exit 1); a request naming nothing the log holds, exit 1."""
    from worker.records.erasure import RecordsError

    try:
        answer = request()
    except RecordsError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None
    (out if answer.done else err).print(answer.message, markup=False)
    raise typer.Exit(0 if answer.done else 1)


@records_app.command("show")
def records_show(account: Annotated[str, typer.Argument(metavar="ACCOUNT")]) -> None:
    """Where an account's records stand: holds, until when they are kept and by which rule, erased or not."""
    records = _records()
    kind, account_id = _target_or_exit(records, account)
    if kind != "account":
        account_id = records.log.account_of(account_id) or account_id
    now = datetime.now(UTC)
    standing = records.standing(account_id, now)
    out.print(f"account {account_id}", markup=False)
    out.print(f"  erased: {standing.erased_at.isoformat()[:19] + ' UTC' if standing.erased_at else 'no'}", markup=False)
    for hold in standing.holds:
        out.print(f"  on legal hold: {hold.target} {hold.id} since {hold.at.date().isoformat()} by {hold.by}: "
                  f"{hold.reason}", markup=False)
    out.print(f"  retention: {standing.kept.says()}", markup=False)
    out.print(f"  erasable now: {'yes' if standing.erasable(now) else 'no'}", markup=False)


@records_app.command("erase")
def records_erase(account: Annotated[str, typer.Argument(metavar="ACCOUNT")], reason: Reason, by: By = None) -> None:
    """An erasure request: destroy the account's keys, so its personal data is unreadable
    for good (the chain still verifies). Refused (exit 1) within retention or under a
    hold, saying until when and why; a refusal is recorded and ceases contact."""
    records = _records(with_redis=True)
    try:
        _answer(lambda: records.erase(account, reason, datetime.now(UTC), by=_by(by)))
    except _redis_errors() as error:
        err.print(f"{account}: erased in the contact log, but Redis was unavailable ({type(error).__name__}): run "
                  "the same command again to remove its scheduled jobs from the agenda", markup=False)
        raise typer.Exit(3) from None


@records_app.command("purge")
def records_purge(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Judge retention as of this day (YYYY-MM-DD); "
                                                              "default now.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be erased, with the rule and "
                                                            "the date.")] = False,
    by: By = None,
) -> None:
    """Erase every account whose retention has run out and that nothing holds. Safe to
    run daily (cron, a Kubernetes CronJob): an account is erased once."""
    now = datetime.now(UTC)
    try:
        moment = datetime.combine(date.fromisoformat(as_of), time.max, UTC) if as_of else now
    except ValueError:
        err.print(f"--as-of: {as_of!r} is not a date (YYYY-MM-DD)", markup=False)
        raise typer.Exit(1) from None
    records = _records(with_redis=not dry_run)
    try:
        due = records.purge(moment, now, dry_run=dry_run, by=_by(by or "purge"))
    except _redis_errors() as error:
        err.print(f"Redis was unavailable ({type(error).__name__}): some accounts may be erased in the log with "
                  "copies left in the agenda; run the purge again", markup=False)
        raise typer.Exit(3) from None
    for standing, _answer in due:
        kept = standing.kept
        until = kept.until.date().isoformat() if kept.until else "?"
        last = kept.last_activity.date().isoformat() if kept.last_activity else "?"
        out.print(f"{standing.account_id}: retention ran out on {until} (rule {kept.rule}, {kept.years} years "
                  f"after {last})" + (" — would be erased" if dry_run else " — erased"), markup=False)
    verb = "would be erased" if dry_run else "erased"
    out.print(f"{len(due)} account(s) {verb} as of {moment.date().isoformat()}", markup=False)


@records_app.command("export")
def records_export(subject: Annotated[str, typer.Argument(metavar="ADDRESS|ACCOUNT")],
                   output: Annotated[Path, typer.Option("--output", help="The folder to write records.json and "
                                                                         "report.html into.")],
                   by: By = None) -> None:
    """Everything held about a person (GDPR Art. 15) as JSON and a readable HTML report;
    nothing about anyone else. Recorded as an access event."""
    from worker import wiring
    from worker.records.access import NothingHeld, export

    log = open_log()
    books = wiring.books(log)
    try:
        done = export(log, books.records, books.jobs, subject, output, datetime.now(UTC), Settings.from_env(),
                      by=_by(by))
    except NothingHeld as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None
    out.print(f"{done.directory}: records.json and report.html — {len(done.accounts)} account(s), "
              f"{done.contacts} message(s), {done.events} event(s)", markup=False)


@records_app.command("rotate-key")
def records_rotate_key(by: By = None) -> None:
    """Re-wrap every data key under a new master key, read from standard input (base64,
    32 bytes); no sealed value changes. Then set DUNNING_MASTER_KEY to the new key on
    every worker and server and restart them: a process on the old key stops making keys."""
    from worker.contact_log.kinds import Event, Kind
    from worker.settings import parse_master_key

    text = sys.stdin.readline() if not sys.stdin.isatty() else getpass.getpass("New master key (base64): ")
    try:
        new = parse_master_key(text)
    except ValueError as error:
        err.print(f"the new master key: {error}", markup=False)
        raise typer.Exit(1) from None
    log = open_log()
    log.vault.check()
    now = datetime.now(UTC)
    with log.locked() as conn:
        count = log.vault.rotate(conn, new)
        log.record(Event(Kind.MASTER_KEY, "rotated", detail={"keys": count, "by": _by(by)}), now, conn)
    out.print(f"{count} key(s) re-wrapped under the new master key. Set DUNNING_MASTER_KEY to it on every worker "
              "and server, and restart them.", markup=False)


def _redis_errors() -> tuple[type[Exception], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError)
