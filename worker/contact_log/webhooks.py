"""The outbox's reads and writes for the dispatcher: take what is due (leased, one per
invoice at a time), record each attempt — the row's new state and, chained, a
`Kind.WEBHOOK` event — and the endpoints that answered 410 Gone. What goes into the
outbox, and when, is `outbox.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from worker.contact_log.kinds import Event, Kind, WebhookStatus
from worker.contact_log.outbox import State, endpoint_hash, endpoint_host
from worker.contact_log.schema import deliveries, events, webhook_endpoints, webhooks
from worker.contact_log.store import Store


@dataclass(frozen=True)
class Pending:
    """A webhook taken to be sent, with what its body is built from."""

    id: int
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


_earlier = aliased(webhooks)
_DUE = (select(webhooks.c.id, webhooks.c.type, webhooks.c.attempts, webhooks.c.lease, webhooks.c.created_at,
               events.c.id.label("event_id"), events.c.digest, events.c.job_id, events.c.invoice_id,
               events.c.account_id, events.c.status, events.c.provider, events.c.provider_message_id,
               events.c.error_code, events.c.detail, events.c.occurred_at, deliveries.c.channel,
               deliveries.c.recipient, deliveries.c.stage, deliveries.c.reasons, deliveries.c.rules)
        .join(events, events.c.id == webhooks.c.event_id)
        .outerjoin(deliveries, deliveries.c.id == events.c.delivery_id))


class WebhookBook(Store):
    """The outbox's reads and writes (mixed into `ContactLog`)."""

    def webhooks_due(self, now: datetime, limit: int, lease_for: timedelta) -> list[Pending]:
        """Up to `limit` webhooks due at `now`, oldest first and at most one per invoice
        (an invoice's webhooks go in order: the next waits while an earlier one is still
        pending). Each is leased for `lease_for` — moved out of reach of other dispatchers,
        and back within reach if this one dies before recording the attempt."""
        blocked = exists().where(_earlier.c.invoice_id == webhooks.c.invoice_id,
                                 _earlier.c.state == State.PENDING, _earlier.c.id < webhooks.c.id)
        query = (_DUE.where(webhooks.c.state == State.PENDING, webhooks.c.next_attempt_at <= now, ~blocked)
                 .order_by(webhooks.c.id).limit(limit))
        taken: list[Pending] = []
        with self.engine.begin() as conn:
            rows = conn.execute(query).mappings().all()
            for row in rows:
                won = conn.execute(update(webhooks).where(webhooks.c.id == row["id"], webhooks.c.lease == row["lease"],
                                                          webhooks.c.state == State.PENDING)
                                   .values(lease=webhooks.c.lease + 1, next_attempt_at=now + lease_for)).rowcount
                if won:
                    taken.append(Pending(**{k: v for k, v in row.items() if k != "lease"}))
        return taken

    def record_attempts(self, attempts: Sequence[Attempt], now: datetime, url: str) -> None:
        """Each attempt's outcome on its row and, chained, in the log; a 410 stops the
        endpoint (`url`), and what was still pending for it is dropped."""
        with self.locked() as conn:
            for attempt in attempts:
                hook = attempt.webhook
                state = {WebhookStatus.DELIVERED: State.DELIVERED, WebhookStatus.FAILED: State.FAILED,
                         WebhookStatus.STOPPED: State.STOPPED}.get(attempt.result, State.PENDING)
                conn.execute(update(webhooks).where(webhooks.c.id == hook.id).values(
                    state=state, attempts=hook.attempts + 1, last_status=attempt.status_code,
                    last_error=attempt.error[:200] if attempt.error else None,
                    next_attempt_at=attempt.next_attempt_at or now))
                detail = {"message_id": hook.message_id, "type": hook.type, "attempt": hook.attempts + 1,
                          "status_code": attempt.status_code, "endpoint": endpoint_host(url)}
                if attempt.next_attempt_at is not None:
                    detail["next_attempt_at"] = attempt.next_attempt_at.isoformat()
                self.record(Event(Kind.WEBHOOK, attempt.result, job_id=hook.job_id, invoice_id=hook.invoice_id,
                                  account_id=hook.account_id, error_code=_code(attempt), error_text=attempt.error,
                                  detail=detail), now, conn)
            gone = next((a for a in attempts if a.result == WebhookStatus.STOPPED), None)
            if gone is not None:
                conn.execute(insert(webhook_endpoints).values(url_hash=endpoint_hash(url), host=endpoint_host(url),
                                                              stopped_at=now, message_id=gone.webhook.message_id))
                self.drop_pending(conn)

    def drop_pending(self, conn: Connection | None = None) -> int:
        """Every pending webhook, stopped: the endpoint is gone. How many."""
        with self._in(conn) as c:
            return int(c.execute(update(webhooks).where(webhooks.c.state == State.PENDING)
                                 .values(state=State.STOPPED, last_error="endpoint stopped (410 Gone)")).rowcount)

    def endpoint_stopped(self, url: str) -> datetime | None:
        """When the endpoint at `url` answered 410 Gone, if it did (and was not resumed since)."""
        with self.engine.connect() as conn:
            return conn.execute(select(webhook_endpoints.c.stopped_at)
                                .where(webhook_endpoints.c.url_hash == endpoint_hash(url))).scalar()

    def resume_endpoint(self, url: str, now: datetime, by: str) -> bool:
        """Send to `url` again after a 410 (the billing system says it is back); False if it was not stopped."""
        with self.locked() as conn:
            done = conn.execute(delete(webhook_endpoints)
                                .where(webhook_endpoints.c.url_hash == endpoint_hash(url))).rowcount
            if done:
                self.record(Event(Kind.WEBHOOK, WebhookStatus.RESUMED,
                                  detail={"endpoint": endpoint_host(url), "by": by}), now, conn)
        return bool(done)

    def webhook_counts(self) -> dict[str, int]:
        """How many webhooks are in each state."""
        with self.engine.connect() as conn:
            query = select(webhooks.c.state, func.count()).group_by(webhooks.c.state)
            found: dict[str, int] = dict(conn.execute(query).tuples().all())
        return {state: int(found.get(state, 0)) for state in State}

    def purge_webhooks(self, before: datetime) -> int:
        """Forget finished webhooks made before `before` (their attempts stay in the log)."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(webhooks).where(
                and_(webhooks.c.state != State.PENDING, webhooks.c.created_at < before))).rowcount)


def _code(attempt: Attempt) -> str | None:
    if attempt.status_code is not None:
        return f"http-{attempt.status_code}"
    return "no-answer" if attempt.error else None
