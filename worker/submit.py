"""Intake: validate jobs, keep the bad ones as dead letters, queue the good ones once.

The same `job_id` twice is one reminder: the contact log accepts each id once. A job
that fails validation is stored with every error and its original text, never dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq

from worker.contact_log import ContactLog
from worker.intake import Parsed, parse_job
from worker.job import Job
from worker.pipeline import payload_for
from worker.policy import profiles
from worker.queue import enqueue_many


@dataclass
class Intake:
    accepted: int = 0
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Parsed] = field(default_factory=list)


def submit(parsed: Iterable[Parsed], log: ContactLog, broker: dramatiq.Broker, now: datetime) -> Intake:
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
        ready.append(payload)
    result.accepted = enqueue_many(broker, ready)
    return result


def as_parsed(jobs: Iterable[Job | dict[str, Any]]) -> list[Parsed]:
    """Jobs given from Python (models or dicts), checked like any other input."""
    return [parse_job(job.to_json() if isinstance(job, Job) else job, profiles(), f"item {n}")
            for n, job in enumerate(jobs, start=1)]
