"""The queue message, typed once: what `remind` receives, from intake, the agenda, a retry.

The JSON is the contract between versions: a message queued before an upgrade runs
after it, so keys are only ever added (optional), never renamed.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Notice(TypedDict):
    """The supervisor's email about an escalated case, tried again until it goes out."""

    reasons: list[str]
    escalated_at: str  # ISO 8601
    attempt: int


class Envelope(TypedDict):
    job: dict[str, Any]  # the job (contract version 1) as JSON
    attempt: int  # transient failures so far
    first_tried: str | None  # ISO 8601: when the first transient failure happened (retries give up 5 days on)
    slot: NotRequired[str]  # a sender's rate-limit slot reserved on an earlier pass (`throttle.py`)
    resend: NotRequired[str]  # the delivery key of an email whose data got no reply: send it once more
    notify: NotRequired[Notice]  # not a reminder: the supervisor's notice of an escalation


def envelope_for(job: Any) -> Envelope:
    """A fresh job's message: the job as JSON, no retries yet. (`job` is a
    `worker.jobs.contract.Job`; typed loosely so the queue does not import jobs.)"""
    return {"job": job.to_json(), "attempt": 0, "first_tried": None}
