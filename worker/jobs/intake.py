"""Intake: validate jobs, keep the bad ones as dead letters, queue the good ones once.

The same `job_id` twice is one reminder: the contact log accepts each id once. A job
that fails validation is stored with every error and its original text, never dropped.
A job with `"cadence"` registers its invoice: every step of the ladder is planned
(`schedules.cadence`), accepted under its own id `INVOICE/stage/n`, recorded with the
plan in the contact log, and put in the agenda for its moment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import redis
import sqlalchemy.exc
from dramatiq.brokers.redis import RedisBroker

from schedules import Profile, Profiles
from schedules.cadence import plan
from worker.contact_log.kinds import Event, Kind
from worker.jobs.book import JobBook, JobRow
from worker.jobs.contract import Job
from worker.jobs.parse import Parsed, parse_job
from worker.queue.agenda import Agenda
from worker.queue.broker import BATCH, enqueue_many
from worker.queue.envelope import Envelope, envelope_for

logger = logging.getLogger(__name__)
RECONCILE_AFTER = timedelta(minutes=2)  # an intake in progress is not a lost one


OUTAGES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError,
           sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)


@dataclass
class Intake:
    accepted: int = 0  # jobs queued (registrations not counted: see `registered`)
    registered: int = 0  # cadence steps put in the agenda
    accepted_ids: list[str] = field(default_factory=list)  # every job taken, queued or registered, in order
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Parsed] = field(default_factory=list)
    # Valid jobs the queue or the log could not take now: not accepted, to be sent again.
    unavailable: list[str] = field(default_factory=list)
    reason: str | None = None  # why `unavailable` were not accepted


class Unavailable(Exception):
    """The queue (Redis) or the contact log is away: the jobs in `intake.unavailable` were
    not accepted and are to be sent again (the same batch may be: what was accepted comes
    back as duplicates). Distinct from bad input, which is never worth sending again."""

    def __init__(self, intake: Intake) -> None:
        super().__init__(f"{intake.reason}: {len(intake.unavailable)} job(s) not accepted; send them again "
                         f"({intake.accepted} queued, {intake.registered} cadence step(s) planned)")
        self.intake = intake


def submit(parsed: Iterable[Parsed], book: JobBook, known: Profiles, broker: dramatiq.Broker, now: datetime,
           agenda: Agenda | None = None) -> Intake:
    """Queue the valid jobs, register the cadences; `agenda` defaults to the broker's Redis.

    A job is reported accepted only once it is on the queue (or its steps in the agenda):
    it is recorded first, unqueued; queued; then marked queued. If the queue refuses, the
    records are taken back and the job is listed in `unavailable`; a record left behind
    by a process that died in between is queued by the next intake of the same job, or
    by the worker's reconciler (`reconcile`). Raises nothing for an outage: see
    `Intake.reason`.
    """
    result = Intake()
    valid: list[Job] = []
    rejected: list[Parsed] = []
    for item in parsed:
        (valid.append(item.job) if item.job is not None else rejected.append(item))
    try:
        valid = _not_erased(book, valid, now, result)
        for item in rejected:
            book.log.dead_letter(f"intake {item.where}".strip(), "; ".join(item.errors), item.raw, now, item.job_id)
            result.rejected.append(item)
        taken, result.duplicates = _take(book, valid, now, result)
    except OUTAGES as error:
        return _unavailable(result, [job.job_id for job in valid], "the contact log is unavailable", error)
    plain = [job for job in valid if job.job_id in taken and job.cadence is None]
    queued: list[str] = []
    try:
        for start in range(0, len(plain), BATCH):
            chunk = plain[start:start + BATCH]
            enqueue_many(broker, [envelope_for(job) for job in chunk])
            queued.extend(job.job_id for job in chunk)
        for job in valid:
            if job.job_id in taken and job.cadence is not None:
                if agenda is None:
                    assert isinstance(broker, RedisBroker), "registering a cadence needs the agenda (Redis)"
                    agenda = Agenda(broker.client)
                result.registered += register(job, book, known, agenda, now)
                queued.append(job.job_id)
    except OUTAGES as error:
        done = set(queued)
        missed = [job_id for job_id in taken if job_id not in done]
        with suppress(*OUTAGES):
            book.release(missed)  # else the reconciler queues them later: never lost either way
        accepted = [job.job_id for job in plain if job.job_id in done]
        _mark(book, accepted, now)
        result.accepted = len(accepted)
        result.accepted_ids = [job.job_id for job in valid if job.job_id in done]
        return _unavailable(result, missed, _what(error), error)
    _mark(book, [job.job_id for job in plain], now)
    result.accepted = len(plain)
    result.accepted_ids = [job.job_id for job in valid if job.job_id in taken]
    return result


def _not_erased(book: JobBook, jobs: list[Job], now: datetime, result: Intake) -> list[Job]:
    """Refuse a job accepted before its account was erased (a replay would bring the
    person back): rejected with the reason, kept as a dead letter without its content.
    A new job for the account is new data, and starts a new key."""
    erased = book.erased_jobs(job.job_id for job in jobs) if jobs else {}
    for job in jobs:
        if job.job_id in erased:
            reason = (f"job_id: {job.job_id} was accepted before account {erased[job.job_id]} was erased; a replayed "
                      "job is refused so as not to bring back erased data (send new jobs with new job ids)")
            book.log.dead_letter("intake", reason, "[withheld: the account was erased]", now, job.job_id)
            result.rejected.append(Parsed("intake", None, "", job_id=job.job_id, errors=[reason]))
    return [job for job in jobs if job.job_id not in erased]


def _take(book: JobBook, jobs: list[Job], now: datetime, result: Intake) -> tuple[set[str], list[str]]:
    """Record the jobs (one transaction); a job the database refuses for its content is
    rejected alone, the others go on."""
    rows = [JobRow(job.job_id, job.invoice.id, job.debtor.account_id,
                   json.dumps(envelope_for(job)["job"], ensure_ascii=False)) for job in jobs]
    try:
        taken, duplicates = book.take_jobs(rows, now)
        return set(taken), duplicates
    except sqlalchemy.exc.StatementError as error:
        if isinstance(error, OUTAGES):
            raise
    taken_all: set[str] = set()
    duplicates_all: list[str] = []
    for job, row in zip(jobs, rows, strict=True):
        try:
            taken, duplicates = book.take_jobs([row], now)
        except sqlalchemy.exc.StatementError as error:
            if isinstance(error, OUTAGES):
                raise
            reason = f"the contact log cannot store this job: {type(error.orig or error).__name__}"
            book.log.dead_letter("intake", reason, row.payload, now, job.job_id)
            result.rejected.append(Parsed("intake", None, row.payload, job_id=job.job_id, errors=[f"(job): {reason}"]))
            continue
        taken_all.update(taken)
        duplicates_all.extend(duplicates)
    return taken_all, duplicates_all


def _mark(book: JobBook, job_ids: list[str], now: datetime) -> None:
    """Queued: say so. If the log is away now, the jobs are queued all the same (accepted);
    the reconciler may queue them once more later, which the delivery key makes harmless."""
    try:
        book.mark_queued(job_ids, now)
    except OUTAGES:
        logger.warning("%d queued job(s) could not be marked queued (the contact log is away)", len(job_ids))


def _what(error: BaseException) -> str:
    if isinstance(error, sqlalchemy.exc.SQLAlchemyError):
        return "the contact log is unavailable"
    return "the queue (Redis) is unavailable"


def _unavailable(result: Intake, job_ids: list[str], what: str, error: BaseException) -> Intake:
    result.unavailable = job_ids
    result.reason = f"{what} ({type(error).__name__}: {str(error)[:200]})"
    logger.warning("intake: %s; %d job(s) not accepted", result.reason, len(job_ids))
    return result


def register(job: Job, book: JobBook, known: Profiles, agenda: Agenda, now: datetime) -> int:
    """Plan the invoice's cadence and put its steps in the agenda; returns how many steps.

    The steps are recorded (unqueued, under the registration) before the agenda has
    them, and marked queued with the registration after; a step id accepted before (the
    invoice registered twice under different ids) is not planned again.
    """
    assert job.cadence is not None
    steps = plan(job, now, known[job.cadence])
    rows: list[JobRow] = []
    entries: dict[str, tuple[str, Envelope, datetime]] = {}
    planned: dict[str, dict[str, Any]] = {}
    for step in steps:
        step_job = job.model_copy(update={"job_id": step.job_id(job.invoice.id), "stage": step.stage,
                                          "not_before": step.not_before, "cadence": None})
        payload = envelope_for(step_job)
        rows.append(JobRow(step_job.job_id, job.invoice.id, job.debtor.account_id,
                           json.dumps(payload["job"], ensure_ascii=False), parent_id=job.job_id))
        entries[step_job.job_id] = (step_job.job_id, payload, step.at)
        planned[step_job.job_id] = {"job_id": step_job.job_id, "stage": step.stage, "day": step.day.isoformat(),
                                    "at": step.at.isoformat(),
                                    **({"not_before": step.not_before.isoformat()} if step.not_before else {})}
    taken, _duplicates = book.take_jobs(rows, now)
    try:
        agenda.schedule_many([entries[job_id] for job_id in taken])
    except OUTAGES:
        with suppress(*OUTAGES):
            book.release(taken)
        raise
    book.log.record(Event(Kind.CADENCE, "registered", job_id=job.job_id, invoice_id=job.invoice.id,
                     account_id=job.debtor.account_id,
                     detail={"profile": job.cadence, "steps": [planned[job_id] for job_id in taken]}), now)
    book.mark_queued([*taken, job.job_id], now)
    return len(taken)


def reconcile(book: JobBook, known: Profiles, broker: dramatiq.Broker, agenda: Agenda, now: datetime,
              older_than: timedelta = RECONCILE_AFTER) -> int:
    """Queue the jobs recorded but never queued (an intake that died between the two, or
    whose take-back failed too), and re-plan such registrations; returns how many. Run
    by the worker's dispatcher; a job queued twice this way is sent once (delivery key)."""
    rows = book.unqueued(now - older_than)
    if not rows:
        return 0
    plain: list[Job] = []
    for row in rows:
        parsed = parse_job(json.loads(row["payload"]), known, "reconcile")
        if parsed.job is None:  # the profiles changed since: keep it with the reason, as intake would
            book.log.dead_letter("reconcile", "; ".join(parsed.errors), row["payload"], now, row["job_id"])
            book.mark_queued([row["job_id"]], now)
        elif parsed.job.cadence is not None:
            register(parsed.job, book, known, agenda, now)
        else:
            plain.append(parsed.job)
    enqueue_many(broker, [envelope_for(job) for job in plain])
    book.mark_queued([job.job_id for job in plain], now)
    logger.warning("reconciler: queued %d job(s) that intake had recorded but not queued", len(rows))
    return len(rows)


def as_registration(item: Parsed, known: Mapping[str, Profile]) -> Parsed:
    """`dunning register`: a job read without `"cadence"` registers its profile's ladder."""
    data = item.data
    if not isinstance(data, dict) or "cadence" in data:
        return item
    return parse_job({**data, "cadence": data.get("profile", "default")}, known, item.where, item.text)


def as_parsed(jobs: Iterable[Job | dict[str, Any]], known: Profiles) -> list[Parsed]:
    """Jobs given from Python (models or dicts), checked like any other input."""
    return [parse_job(job.to_json() if isinstance(job, Job) else job, known, f"item {n}")
            for n, job in enumerate(jobs, start=1)]
