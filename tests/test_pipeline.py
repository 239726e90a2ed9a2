"""The pipeline in process: a fixed clock, the contact log (SQLite and PostgreSQL), the
Redis fixture and the local SMTP sink — one reminder's way in milliseconds, without a
worker subprocess. The subprocess tests (`test_worker.py`) still run the whole thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import job_data, make_job

from channels.base import Message, NextWindow, SendResult
from worker import wiring
from worker.clock import FixedClock
from worker.contact_log import ContactLog
from worker.jobs.parse import parse_job
from worker.local.smtp_sink import EmlFolder, start
from worker.pipeline import Pipeline, Services, escalation
from worker.policy import profiles
from worker.queue.envelope import envelope_for
from worker.settings import Settings

WEDNESDAY_10 = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
SATURDAY_10 = datetime.fromisoformat("2026-12-05T10:00:00+08:00")


@dataclass
class World:
    pipeline: Pipeline
    services: Services
    clock: FixedClock
    mail: EmlFolder
    log: ContactLog

    def handle(self, payload: dict[str, Any]) -> str:
        return asyncio.run(self.pipeline.handle(payload))


@pytest.fixture
def world(log: ContactLog, redis_client: Any, redis_server: Any, tmp_path: Path) -> Iterator[World]:
    mail = EmlFolder(tmp_path / "mail")
    smtp = start(mail)
    settings = Settings.from_env({"DUNNING_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
                                  "DUNNING_REDIS_URL": redis_server.url, "DUNNING_SECRET_KEY": "k" * 32})
    clock = FixedClock(WEDNESDAY_10)
    services = wiring.services(settings, log, client=redis_client, at=clock)
    yield World(Pipeline(services), services, clock, mail, log)
    services.write.close()
    smtp.stop()


def email_job(**changes: Any) -> dict[str, Any]:
    return job_data(debtor__consent={"email": True, "sms": False, "voice": False}, **changes)


def test_a_reminder_is_decided_rendered_claimed_sent_and_recorded_once(world: World) -> None:
    job = parse_job(email_job(), profiles(None)).job
    assert job is not None
    assert world.handle(dict(envelope_for(job))) == "sent"
    again = world.handle(dict(envelope_for(job)))  # the queue delivers it again
    assert again in ("duplicate", "deferred"), "a contact today already: nothing more is sent"
    [sent] = world.mail.messages()
    assert sent["To"] == job.debtor.email and job.invoice.number in sent["Subject"]
    rows = [(r["kind"], r["status"]) for r in world.log.history(invoice=job.invoice.id)]
    assert rows[:3] == [("decision", "send"), ("delivery", "claimed"), ("delivery", "sent")]
    assert ("delivery", "claimed") not in rows[3:], "claimed once"
    assert world.log.verify().intact


def test_a_reminders_statements_find_their_rows_by_index_however_long_the_log(world: World) -> None:
    """Every statement a reminder runs finds its rows down an index that starts with what
    it knows (account, invoice, delivery, address, chain), so a reminder costs the same on
    a log of ten years as on an empty one. It did not: the account's newest claim was
    looked up by walking every claim in the log (`ix_events_kind`), a third of a worker's
    time at 10,000 reminders (issue 25, migration 0014). SQLite's plans; PostgreSQL's
    depend on its statistics."""
    from sqlalchemy import event

    if world.log.engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans by its statistics")
    ran: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not many and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            ran.append((statement, parameters))

    jobs = [parse_job(email_job(job_id=f"INV-{n}/r", invoice__id=f"INV-{n}"), profiles(None)).job for n in range(2)]

    async def both() -> list[str]:  # the second of the same account: its claims and facts are read too
        return [await world.pipeline.handle(dict(envelope_for(job))) for job in jobs if job is not None]

    event.listen(world.log.engine, "before_cursor_execute", record)
    try:
        assert asyncio.run(both()) == ["sent", "sent"]
    finally:
        event.remove(world.log.engine, "before_cursor_execute", record)
    assert ran, "the reminder read the log"
    walks = []
    with world.log.engine.connect() as conn:
        for statement, parameters in ran:
            plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
            walks += [(step, statement) for step in plan
                      if step.startswith(("SCAN events", "SCAN deliveries")) or "ix_events_kind" in step]
    assert not walks, walks


def test_a_reminder_on_a_weekend_waits_in_the_agenda_for_the_window(world: World) -> None:
    world.clock.moment = SATURDAY_10
    job = parse_job(email_job(), profiles(None)).job
    assert job is not None
    assert world.handle(dict(envelope_for(job))) == "deferred"
    due = world.services.agenda.due_at(job.job_id)
    assert due is not None and due.astimezone(SATURDAY_10.tzinfo).weekday() == 0, "Monday, in the debtor's week"
    assert world.mail.messages() == []


class ClosingWindow:
    """A channel whose provider cannot deliver before the window closes (Twilio's 30036)."""

    name, provider, rate = "email", "smtp", None

    def cost(self, text: str) -> int:
        return 1

    async def send(self, message: Message) -> SendResult:
        raise NextWindow("30036", "the contact window closes before the message could be delivered")

    async def close(self) -> None:
        pass


def test_a_message_too_late_for_its_window_is_decided_again_when_the_window_has_closed(world: World) -> None:
    world.services.channels = {"email": ClosingWindow()}
    job = parse_job(email_job(), profiles(None)).job
    assert job is not None
    assert world.handle(dict(envelope_for(job))) == "retry"
    [retry] = [r for r in world.log.history() if r["status"] == "retry"]
    window_end = datetime.fromisoformat(next(r for r in world.log.history() if r["kind"] == "decision")
                                        ["detail"]["window_end"])
    assert world.services.agenda.due_at(job.job_id) == window_end, "not the backoff: the window's end"
    assert retry["provider"] == "smtp" and retry["error_code"] == "30036"


def test_the_supervisors_notice_counts_days_late_on_the_debtors_day() -> None:
    """No stated zone, a Chinese mobile: 17:00 UTC on 1 December is already 2 December
    in Shanghai, as `decide` counts it; the notice says the same."""
    job = make_job(debtor__timezone=None, invoice__due_date="2026-11-20")
    moment = datetime.fromisoformat("2026-12-01T17:00:00+00:00")
    assert "12 days past due" in escalation.subject(job, moment)
    assert "12 days past due" in escalation.body(job, ["no answer"], [], moment)
    assert "11 days past due" in escalation.subject(job, moment - timedelta(hours=10))


def test_the_queue_message_keeps_its_shape_and_older_messages_still_run(world: World) -> None:
    """The envelope's JSON is a contract between versions: the keys a fresh job carries,
    in order; and a message with only the job (as the first versions queued) runs."""
    job = parse_job(email_job(), profiles(None)).job
    assert job is not None
    assert list(envelope_for(job)) == ["job", "attempt", "first_tried"]
    assert (envelope_for(job)["attempt"], envelope_for(job)["first_tried"]) == (0, None)
    assert world.handle({"job": job.to_json()}) == "sent"


def test_a_job_the_billing_system_cancelled_is_not_sent(world: World) -> None:
    from worker.contact_log import Event
    from worker.contact_log.kinds import JobStatus, Kind

    job = parse_job(email_job(), profiles(None)).job
    assert job is not None
    world.log.record(Event(Kind.JOB, JobStatus.CANCELLED, job_id=job.job_id, invoice_id=job.invoice.id,
                           account_id=job.debtor.account_id, detail={"by": "api:test"}), WEDNESDAY_10)
    assert world.handle(dict(envelope_for(job))) == "skipped"
    assert world.mail.messages() == []


def test_a_read_waiting_on_the_database_does_not_stop_the_event_loop(world: World) -> None:
    """On PostgreSQL the pipeline's reads of the log run in a thread, like its writes
    (`worker.db.writer`): while the database makes one reminder wait (a table locked by
    another session, for a second), the process's event loop — every other reminder of
    the process — goes on. (SQLite's readers never wait for its writer: read in place.)"""
    import threading

    from sqlalchemy import text

    if world.log.engine.dialect.name != "postgresql":
        pytest.skip("a lock that makes a read wait: PostgreSQL's LOCK TABLE")
    job = parse_job(email_job(), profiles(None)).job
    assert job is not None
    locker = world.log.engine.connect()
    transaction = locker.begin()
    locker.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
    threading.Timer(1.0, transaction.rollback).start()

    async def both() -> tuple[str, float]:
        gaps: list[float] = []
        loop = asyncio.get_running_loop()

        async def heartbeat() -> None:
            last = loop.time()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(loop.time() - last)
                last = loop.time()
        beating = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.05)
        outcome = await world.pipeline.handle(dict(envelope_for(job)))
        await asyncio.sleep(0.05)  # a beat after: a loop that stood still shows as one long gap
        beating.cancel()
        return outcome, max(gaps)

    try:
        outcome, longest = asyncio.run(both())
    finally:
        locker.close()
    assert outcome == "sent"
    assert longest < 0.5, f"the event loop stood still for {longest:.2f} s while a read waited"
