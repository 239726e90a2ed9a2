"""Intake: validate jobs, keep the bad ones as dead letters, queue the good ones once.

The same `job_id` twice is one reminder: the contact log accepts each id once. A job
that fails validation is stored with every error and its original text, never dropped.
A job with `"cadence"` registers its invoice: every step of the ladder is planned
(`schedules.cadence`), accepted under its own id `INVOICE/stage/n`, recorded with the
plan in the contact log, and put in the agenda for its moment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from schedules import Profile
from schedules.cadence import plan
from worker.agenda import Agenda
from worker.contact_log import ContactLog
from worker.intake import Parsed, parse_job
from worker.job import Job
from worker.pipeline import payload_for
from worker.policy import profiles
from worker.queue import enqueue_many


@dataclass
class Intake:
    accepted: int = 0
    registered: int = 0  # cadence steps put in the agenda
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Parsed] = field(default_factory=list)


def submit(parsed: Iterable[Parsed], log: ContactLog, broker: dramatiq.Broker, now: datetime,
           agenda: Agenda | None = None) -> Intake:
    """Queue the valid jobs, register the cadences; `agenda` defaults to the broker's Redis."""
    result = Intake()
    ready: list[dict[str, Any]] = []
    for item in parsed:
        if item.job is None:
            log.dead_letter(f"intake {item.where}".strip(), "; ".join(item.errors), item.raw, now, item.job_id)
            result.rejected.append(item)
            continue
        job = item.job
        payload = payload_for(job)
        if not log.accept_job(job.job_id, job.invoice.id, job.debtor.account_id,
                              json.dumps(payload["job"], ensure_ascii=False), now):
            result.duplicates.append(job.job_id)
            continue
        if job.cadence is None:
            ready.append(payload)
            continue
        if agenda is None:
            assert isinstance(broker, RedisBroker), "registering a cadence needs the agenda (Redis)"
            agenda = Agenda(broker.client)
        result.registered += register(job, log, agenda, now)
    result.accepted = enqueue_many(broker, ready)
    return result


def register(job: Job, log: ContactLog, agenda: Agenda, now: datetime) -> int:
    """Plan the invoice's cadence and put its steps in the agenda; returns how many steps.

    A step id accepted before (the invoice registered twice under different ids) is
    not planned again.
    """
    assert job.cadence is not None
    steps = plan(job, now, profiles()[job.cadence])
    entries: list[tuple[str, dict[str, Any], datetime]] = []
    planned: list[dict[str, Any]] = []
    for step in steps:
        step_job = job.model_copy(update={"job_id": step.job_id(job.invoice.id), "stage": step.stage,
                                          "not_before": step.not_before, "cadence": None})
        payload = payload_for(step_job)
        if log.accept_job(step_job.job_id, job.invoice.id, job.debtor.account_id,
                          json.dumps(payload["job"], ensure_ascii=False), now):
            entries.append((step_job.job_id, payload, step.at))
            planned.append({"job_id": step_job.job_id, "stage": step.stage, "day": step.day.isoformat(),
                            "at": step.at.isoformat(),
                            **({"not_before": step.not_before.isoformat()} if step.not_before else {})})
    log.record("cadence", "registered", now, job_id=job.job_id, invoice_id=job.invoice.id,
               account_id=job.debtor.account_id, detail={"profile": job.cadence, "steps": planned})
    agenda.schedule_many(entries)
    return len(entries)


def as_registration(item: Parsed, known: Mapping[str, Profile]) -> Parsed:
    """`dunning register`: a job read without `"cadence"` registers its profile's ladder."""
    data = item.data
    if not isinstance(data, dict) or "cadence" in data:
        return item
    return parse_job({**data, "cadence": data.get("profile", "default")}, known, item.where, item.text)


def as_parsed(jobs: Iterable[Job | dict[str, Any]]) -> list[Parsed]:
    """Jobs given from Python (models or dicts), checked like any other input."""
    return [parse_job(job.to_json() if isinstance(job, Job) else job, profiles(), f"item {n}")
            for n, job in enumerate(jobs, start=1)]
