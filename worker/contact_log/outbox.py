"""The webhook outbox: what the billing system is still to be told.

An event worth reporting (`topic`) gets an outbox row in the same transaction that
appends it (`Store._append`), so a webhook exists exactly when the thing it reports
is recorded: none for a send that rolled back, none lost when a process dies after
the commit. The row only points at the event; the body is built from the event (and
its delivery) when it is sent, so retries send the same bytes.

The outbox is bookkeeping outside the hash chain; what is chained is each attempt to
deliver (`Kind.WEBHOOK`, with the HTTP status), written with the row's new state in
one transaction (`webhooks.WebhookBook.record_attempts`). Who sends, when to retry and when to give up is
the dispatcher's business (`worker/webhooks/dispatcher.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from worker.contact_log.kinds import DeliveryStatus, InvoiceStatus, Kind
from worker.contact_log.schema import webhooks

TOPICS = ("reminder.sent", "reminder.delivered", "reminder.failed", "reminder.suppressed", "invoice.escalated")
_DELIVERED = frozenset({"delivered", "completed"})  # a provider's callback: the message arrived, the call was answered
_UNDELIVERED = frozenset({"undelivered", "failed", "canceled", "busy", "no-answer"})


class State(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: its retries ran out
    STOPPED = "stopped"  # the endpoint answered 410 Gone


def topic(values: Mapping[str, Any]) -> str | None:
    """The webhook an event row reports, if any. Our own `sent` and `failed` are the
    pipeline's; a provider's callback reports `delivered` or a failure after the fact."""
    kind, status = values["kind"], values["status"]
    if kind == Kind.DELIVERY:
        callback = bool((values.get("detail") or {}).get("callback"))
        if not callback:
            return {DeliveryStatus.SENT: "reminder.sent", DeliveryStatus.FAILED: "reminder.failed"}.get(status)
        if status in _DELIVERED:
            return "reminder.delivered"
        return "reminder.failed" if status in _UNDELIVERED else None
    if kind == Kind.DECISION and status == "skip":
        return "reminder.suppressed"
    if kind == Kind.INVOICE and status == InvoiceStatus.ESCALATED:
        return "invoice.escalated"
    return None


_INSERT = insert(webhooks)


def enqueue(conn: Connection, event_id: int, kind: str, invoice_id: str | None, now: datetime) -> None:
    """The outbox row for event `event_id`, inside the transaction that appended it."""
    conn.execute(_INSERT, {"event_id": event_id, "type": kind, "invoice_id": invoice_id, "state": State.PENDING,
                           "attempts": 0, "lease": 0, "next_attempt_at": now, "created_at": now})


def endpoint_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def endpoint_host(url: str) -> str:
    """What may be shown of an endpoint: its host (the path or query may carry a token)."""
    return urlsplit(url).hostname or "?"
