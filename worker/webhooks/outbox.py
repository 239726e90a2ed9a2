"""The webhook outbox: what the billing system is still to be told, read off the log.

The events are the record: a webhook exists because the event it reports
(`topic`: a send, a delivery or failure, a send decided against, an escalation) was
appended to the log, and nothing is written beside it when it is appended — the
chain's lock is the worker's bottleneck, and an outbox row written under it cost a
fifth of the throughput (`bench/throughput.py --webhooks`). Instead each endpoint
keeps a cursor in the log (`collect`): the dispatcher moves it over newly appended
events and makes an outbox row for each one to report, in one transaction, so none is
missed (a worker that was down catches up) and none is taken twice. That is sound
because the cursor only moves up to `Store.settled`: an id at or below which every
event has committed (ids are not in commit order across the log's chains), so once an
event is seen, no event with a lower id can appear later.

The outbox is bookkeeping outside the hash chain; what is chained is each attempt to
deliver (`Kind.WEBHOOK`, with the HTTP status), written with the row's new state in
one transaction (`record_attempts`). Who sends, when to retry and when to give up is
the dispatcher's business (`worker/webhooks/dispatcher.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from worker.contact_log.kinds import DeliveryStatus, Event, InvoiceStatus, Kind, WebhookStatus
from worker.contact_log.store import Store
from worker.db.schema import UTCDateTime, deliveries, events, webhook_endpoints, webhooks

_DELIVERED = frozenset({"delivered", "completed"})  # a provider's callback: the message arrived, the call was answered
_UNDELIVERED = frozenset({"undelivered", "failed", "canceled", "busy", "no-answer"})
WINDOW = 5000  # events looked at per `collect`


class HookState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: its retries ran out
    STOPPED = "stopped"  # the endpoint answered 410 Gone


def topic(row: Mapping[Any, Any]) -> str | None:
    """The webhook an event reports, if any. Our own `sent` and `failed` are the
    pipeline's; a provider's callback reports `delivered` or a failure after the fact."""
    kind, status = row["kind"], row["status"]
    if kind == Kind.DELIVERY:
        if not (row["detail"] or {}).get("callback"):
            return {DeliveryStatus.SENT: "reminder.sent", DeliveryStatus.FAILED: "reminder.failed"}.get(status)
        if status in _DELIVERED:
            return "reminder.delivered"
        return "reminder.failed" if status in _UNDELIVERED else None
    if kind == Kind.DECISION and status == "skip":
        return "reminder.suppressed"
    if kind == Kind.INVOICE and status == InvoiceStatus.ESCALATED:
        return "invoice.escalated"
    return None


def endpoint_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def endpoint_host(url: str) -> str:
    """What may be shown of an endpoint: its host (the path or query may carry a token)."""
    return urlsplit(url).hostname or "?"


@dataclass(frozen=True)
class Pending:
    """A webhook taken to be sent, with what its body is built from."""

    type: str
    attempts: int  # made before this one
    created_at: datetime
    event_id: int
    digest: str | None
    job_id: str | None
    invoice_id: str | None
    account_id: str | None
    status: str
    provider: str | None
    provider_message_id: str | None
    error_code: str | None
    detail: dict[str, Any] | None
    occurred_at: datetime
    channel: str | None  # the delivery's, for an event about one
    recipient: str | None
    stage: str | None
    reasons: list[str] | None
    rules: list[str] | None

    @property
    def message_id(self) -> str:
        """The Standard Webhooks `webhook-id`: the same on every retry, so receivers can
        drop repeats; from the event's chain digest, so unique across databases too."""
        return f"msg_{self.digest[:32]}" if self.digest else f"msg_{self.event_id}"


@dataclass(frozen=True)
class Attempt:
    """One try at delivering a webhook, as the dispatcher judged it."""

    webhook: Pending
    result: WebhookStatus  # delivered, retry, failed (given up) or stopped (410)
    status_code: int | None  # the endpoint's HTTP status; None: no answer
    error: str | None  # why there was no answer (timeout, connection dropped...)
    next_attempt_at: datetime | None = None  # for a retry


# Built once (statements built per call cost more in SQLAlchemy than running them).
_HEAD = select(func.max(events.c.id))
_ENDPOINT = select(webhook_endpoints).where(webhook_endpoints.c.url_hash == bindparam("endpoint"))
_NEW_EVENTS = (select(events.c.id, events.c.kind, events.c.status, events.c.detail, events.c.invoice_id)
               .where(events.c.id > bindparam("after"), events.c.id <= bindparam("upto"),
                      events.c.kind.in_((Kind.DELIVERY, Kind.DECISION, Kind.INVOICE)),
                      events.c.status.in_(sorted({DeliveryStatus.SENT, DeliveryStatus.FAILED, "skip",
                                                  InvoiceStatus.ESCALATED, *_DELIVERED, *_UNDELIVERED})))
               .order_by(events.c.id))
_MOVE = (update(webhook_endpoints).where(webhook_endpoints.c.url_hash == bindparam("endpoint"),
                                         webhook_endpoints.c.cursor == bindparam("seen"))
         .values(cursor=bindparam("upto")))
_DUE = (select(webhooks.c.type, webhooks.c.attempts, webhooks.c.created_at,
               events.c.id.label("event_id"), events.c.digest, events.c.job_id, events.c.invoice_id,
               events.c.account_id, events.c.status, events.c.provider, events.c.provider_message_id,
               events.c.error_code, events.c.detail, events.c.occurred_at, deliveries.c.channel,
               deliveries.c.recipient, deliveries.c.stage, deliveries.c.reasons, deliveries.c.rules)
        .join(events, events.c.id == webhooks.c.event_id)
        .outerjoin(deliveries, deliveries.c.id == events.c.delivery_id)
        .where(webhooks.c.event_id.in_(bindparam("ids", expanding=True))).order_by(webhooks.c.event_id))
_due, _earlier = webhooks.alias("due"), webhooks.alias("earlier")
_NOW = bindparam("now", type_=UTCDateTime)
_DUE_IDS = (select(_due.c.event_id)
            .where(_due.c.state == HookState.PENDING, _due.c.next_attempt_at <= _NOW,
                   ~exists().where(_earlier.c.invoice_id == _due.c.invoice_id, _earlier.c.state == HookState.PENDING,
                                   _earlier.c.event_id < _due.c.event_id))
            .order_by(_due.c.next_attempt_at, _due.c.event_id).limit(bindparam("limit")))  # the index's order
# The state and the time are checked again on the row itself: PostgreSQL re-reads a row
# another transaction changed meanwhile, so two dispatchers never lease the same one.
_LEASE = (update(webhooks)
          .where(webhooks.c.event_id.in_(_DUE_IDS), webhooks.c.state == HookState.PENDING,
                 webhooks.c.next_attempt_at <= _NOW)
          .values(next_attempt_at=bindparam("until", type_=UTCDateTime))
          .returning(webhooks.c.event_id))
_ATTEMPTED = (update(webhooks).where(webhooks.c.event_id == bindparam("hook"))
              .values(state=bindparam("new_state"), attempts=bindparam("tries"), last_status=bindparam("code"),
                      last_error=bindparam("why"), next_attempt_at=bindparam("next_at", type_=UTCDateTime)))
_FINAL = {WebhookStatus.DELIVERED: HookState.DELIVERED, WebhookStatus.FAILED: HookState.FAILED,
          WebhookStatus.STOPPED: HookState.STOPPED}


class Outbox:
    """The outbox's reads and writes over the log's store; its attempts go into the chain through `log`."""

    def __init__(self, log: Store) -> None:
        self.log = log
        self.engine = log.engine
        self.vault = log.vault

    def collect(self, url: str, now: datetime) -> int:
        """Move the endpoint's cursor over the events appended since it last looked,
        making an outbox row for each one to report; how many. A new endpoint starts at
        the log's head: it is told what happens from now on. While it is stopped (410)
        the cursor moves and nothing is kept for it."""
        made = 0
        while (window := self._collect_window(url, now)) is not None:
            made += window
        return made

    def _collect_window(self, url: str, now: datetime) -> int | None:
        """Up to `WINDOW` events past the cursor, in one transaction; None when caught up."""
        key = endpoint_hash(url)
        with self.engine.connect() as conn:  # a read first: the chains' barrier only when there is something to do
            head, endpoint = conn.execute(_HEAD).scalar() or 0, conn.execute(_ENDPOINT, {"endpoint": key}).first()
        if endpoint is not None and head <= endpoint.cursor:
            return None
        head = self.log.settled()
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    self.log.lock(conn)  # the write lock before reading: in WAL a stale read cannot become a write
                endpoint = conn.execute(_ENDPOINT, {"endpoint": key}).first()
                if endpoint is None:
                    conn.execute(insert(webhook_endpoints).values(url_hash=key, host=endpoint_host(url), cursor=head))
                    return None
                upto = min(head, endpoint.cursor + WINDOW)
                if upto <= endpoint.cursor:
                    return None
                # Moved first: on PostgreSQL a second dispatcher waits here, then finds the
                # cursor gone from where it saw it, and keeps nothing (no row taken twice).
                if not conn.execute(_MOVE, {"endpoint": key, "seen": endpoint.cursor, "upto": upto}).rowcount:
                    return None
                if endpoint.stopped_at is not None:
                    return 0
                rows = [{"event_id": row.id, "type": kind, "invoice_id": row.invoice_id, "state": HookState.PENDING,
                         "attempts": 0, "next_attempt_at": now, "created_at": now}
                        for row in conn.execute(_NEW_EVENTS, {"after": endpoint.cursor, "upto": upto})
                        if (kind := topic(row._mapping)) is not None]
                if rows:
                    conn.execute(insert(webhooks), rows)
                return len(rows)
        except IntegrityError:  # another dispatcher saw the endpoint first
            return None

    def webhooks_due(self, now: datetime, limit: int, lease_for: timedelta) -> list[Pending]:
        """Up to `limit` webhooks due at `now`, longest due first and at most one per invoice
        (an invoice's webhooks go in order: the next waits while an earlier one is still
        pending). Each is leased for `lease_for` — moved out of reach of other dispatchers,
        and back within reach if this one dies before recording the attempt."""
        with self.engine.begin() as conn:
            ids = list(conn.execute(_LEASE, {"now": now, "limit": limit, "until": now + lease_for}).scalars())
            if not ids:
                return []
            return [Pending(**self.vault.open_row(row, conn)) for row in conn.execute(_DUE, {"ids": ids}).mappings()]

    def record_attempts(self, attempts: Sequence[Attempt], now: datetime, url: str) -> None:
        """Each attempt's outcome on its row and, chained, in the log; a 410 stops the
        endpoint (`url`), and what was still pending for it is dropped."""
        if not attempts:
            return
        with self.log.locked(accounts={a.webhook.account_id for a in attempts}) as conn:
            conn.execute(_ATTEMPTED, [
                {"hook": a.webhook.event_id, "new_state": _FINAL.get(a.result, HookState.PENDING),
                 "tries": a.webhook.attempts + 1, "code": a.status_code, "why": a.error[:200] if a.error else None,
                 "next_at": a.next_attempt_at or now} for a in attempts])
            for attempt in attempts:
                hook = attempt.webhook
                detail = {"message_id": hook.message_id, "type": hook.type, "attempt": hook.attempts + 1,
                          "status_code": attempt.status_code, "endpoint": endpoint_host(url)}
                if attempt.next_attempt_at is not None:
                    detail["next_attempt_at"] = attempt.next_attempt_at.isoformat()
                self.log.record(Event(Kind.WEBHOOK, attempt.result, job_id=hook.job_id, invoice_id=hook.invoice_id,
                                  account_id=hook.account_id, error_code=_code(attempt), error_text=attempt.error,
                                  detail=detail), now, conn)
            gone = next((a for a in attempts if a.result == WebhookStatus.STOPPED), None)
            if gone is not None:
                conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.url_hash == endpoint_hash(url))
                             .values(stopped_at=now, stopped_by=gone.webhook.message_id))
                self.drop_pending(conn)

    def drop_pending(self, conn: Connection | None = None) -> int:
        """Every pending webhook, stopped: the endpoint is gone. How many."""
        with self.log.within(conn) as c:
            return int(c.execute(update(webhooks).where(webhooks.c.state == HookState.PENDING)
                                 .values(state=HookState.STOPPED, last_error="endpoint stopped (410 Gone)")).rowcount)

    def endpoint_stopped(self, url: str) -> datetime | None:
        """When the endpoint at `url` answered 410 Gone, if it did (and was not resumed since)."""
        with self.engine.connect() as conn:
            endpoint = conn.execute(_ENDPOINT, {"endpoint": endpoint_hash(url)}).first()
        return endpoint.stopped_at if endpoint is not None else None

    def resume_endpoint(self, url: str, now: datetime, by: str) -> bool:
        """Send to `url` again after a 410 (the billing system says it is back): what
        happens from now on; False if it was not stopped."""
        head = self.log.settled()
        with self.log.locked(house=True) as conn:
            done = conn.execute(update(webhook_endpoints).where(
                webhook_endpoints.c.url_hash == endpoint_hash(url), webhook_endpoints.c.stopped_at.is_not(None))
                .values(stopped_at=None, stopped_by=None, cursor=head)).rowcount
            if done:
                self.log.record(Event(Kind.WEBHOOK, WebhookStatus.RESUMED,
                                  detail={"endpoint": endpoint_host(url), "by": by}), now, conn)
        return bool(done)

    def webhook_counts(self) -> dict[str, int]:
        """How many webhooks are in each state."""
        with self.engine.connect() as conn:
            query = select(webhooks.c.state, func.count()).group_by(webhooks.c.state)
            found: dict[str, int] = {row[0]: int(row[1]) for row in conn.execute(query)}
        return {state: int(found.get(state, 0)) for state in HookState}

    def oldest_pending(self) -> datetime | None:
        """When the oldest webhook still to deliver was made (None: none is waiting)."""
        with self.engine.connect() as conn:
            made: datetime | None = conn.execute(select(func.min(webhooks.c.created_at)).where(
                webhooks.c.state == HookState.PENDING)).scalar()
        return made

    def purge_webhooks(self, before: datetime) -> int:
        """Forget finished webhooks made before `before` (their attempts stay in the log)."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(webhooks).where(
                and_(webhooks.c.state != HookState.PENDING, webhooks.c.created_at < before))).rowcount)


def _code(attempt: Attempt) -> str | None:
    if attempt.status_code is not None:
        return f"http-{attempt.status_code}"
    return "no-answer" if attempt.error else None
