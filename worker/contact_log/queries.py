"""What the CLI, the server and the pipeline read from the log, besides the facts for
`decide` (`facts.py`): deliveries, history, escalations, dead letters, the chain's verdict."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, and_, bindparam, func, or_, select
from sqlalchemy.engine import Connection

from worker.contact_log import chain
from worker.contact_log.kinds import CLOSING, CaseStatus, DeliveryStatus, InvoiceStatus, Kind
from worker.db.schema import chains, dead_letters, deliveries, events, jobs, template_versions
from worker.db.vault import Vault

_DELIVERY_STATUS = (select(events.c.status).where(events.c.delivery_id == bindparam("delivery_id"))
                    .order_by(events.c.id.desc()).limit(1))
_DELIVERY_BY_KEY = select(deliveries.c.id, deliveries.c.claimed_at).where(deliveries.c.delivery_key == bindparam("key"))
_ACCEPTED_AT = select(jobs.c.received_at).where(jobs.c.job_id == bindparam("job_id"))
_CHAINED = (select(events, *(deliveries.c[name].label(f"d_{name}") for name in chain.DELIVERY_FIELDS))
            .select_from(events.outerjoin(deliveries, events.c.delivery_id == deliveries.c.id))
            .order_by(func.coalesce(events.c.chain, 0), events.c.position, events.c.id))
_ONE_CHAIN = _CHAINED.where(events.c.chain == bindparam("chain"))
_CLOSED = select(chains.c.size, chains.c.head).where(chains.c.chain == 0)
_UNCLAIMED = (select(deliveries.c.id).where(~deliveries.c.id.in_(
    select(events.c.delivery_id).where(events.c.kind == Kind.DELIVERY, events.c.status == DeliveryStatus.CLAIMED)
    .where(events.c.delivery_id.is_not(None)))).order_by(deliveries.c.id))


@dataclass(frozen=True)
class Delivery:
    """A delivery and its latest status; `fresh` when this call claimed it."""

    id: int
    key: str
    status: str
    claimed_at: datetime
    fresh: bool = False


@dataclass(frozen=True)
class ProviderDelivery:
    """A delivery found by its provider id, and the callback statuses already applied."""

    id: int
    job_id: str
    invoice_id: str
    account_id: str
    channel: str
    recipient: str
    applied: tuple[str, ...]


def find_delivery(conn: Connection, key: str) -> Delivery | None:
    row = conn.execute(_DELIVERY_BY_KEY, {"key": key}).first()
    if row is None:
        return None
    status = conn.execute(_DELIVERY_STATUS, {"delivery_id": row.id}).scalar_one()
    return Delivery(row.id, key, status, row.claimed_at)


class Queries:
    """The log's reads (mixed into `ContactLog`)."""

    engine: Engine
    vault: Vault

    def delivery(self, key: str) -> Delivery | None:
        """A delivery with its latest status."""
        with self.engine.connect() as conn:
            return find_delivery(conn, key)

    def verify(self, head: str | None = None, progress: Callable[[int], None] | None = None,
               account: str | None = None) -> chain.Verdict:
        """Recompute every chain over every event (and every claimed delivery), or with
        `account` only the chain that account's events are in (1/K of the log);
        `progress` is told how many events are checked, every 1,000."""
        with self.engine.connect() as conn:
            closed = conn.execute(_CLOSED).one_or_none()
            if account is None:
                query, params = _CHAINED, {}
            else:
                count = int(conn.execute(select(func.count()).where(chains.c.chain > 0)).scalar_one())
                query, params = _ONE_CHAIN, {"chain": chain.of_account(account, count)}
            rows: Iterable[Any] = conn.execution_options(yield_per=2000).execute(query, params).mappings()
            if progress is not None:
                rows = _counted(rows, progress)
            verdict = chain.verify(rows, head, (int(closed.size), closed.head) if closed and account is None else None)
            if account is None:
                for delivery_id in conn.execute(_UNCLAIMED).scalars():
                    verdict.problems.append(f"delivery {delivery_id}: no claimed event, so outside the chain")
        return verdict

    def by_provider_id(self, provider_message_id: str, conn: Connection | None = None) -> ProviderDelivery | None:
        """The delivery a provider's id (a Twilio SID) belongs to, with the callback
        statuses applied to it so far, oldest first."""
        if conn is None:
            with self.engine.connect() as own:
                return self.by_provider_id(provider_message_id, own)
        row = conn.execute(select(deliveries.c.id, deliveries.c.job_id, deliveries.c.invoice_id,
                                  deliveries.c.account_id, deliveries.c.channel, deliveries.c.recipient)
                           .join(events, events.c.delivery_id == deliveries.c.id)
                           .where(events.c.provider_message_id == provider_message_id).limit(1)).first()
        if row is None:
            return None
        applied = [r.status for r in conn.execute(
            select(events.c.status, events.c.detail).where(events.c.delivery_id == row.id,
                                                           events.c.kind == Kind.DELIVERY).order_by(events.c.id))
            if (r.detail or {}).get("callback")]
        return ProviderDelivery(row.id, row.job_id, row.invoice_id, row.account_id, row.channel,
                                self.vault.open("recipient", row.recipient, conn), tuple(applied))

    def account_of(self, invoice_id: str, conn: Connection | None = None) -> str | None:
        """The account an invoice belongs to, from the jobs accepted for it (or, for a log
        written without them, its deliveries)."""
        with reading(self.engine, conn) as c:
            return (c.execute(select(jobs.c.account_id).where(jobs.c.invoice_id == invoice_id).limit(1)).scalar()
                    or c.execute(select(deliveries.c.account_id).where(deliveries.c.invoice_id == invoice_id)
                                 .limit(1)).scalar())

    def names_invoice(self, invoice_id: str, conn: Connection | None = None) -> bool:
        """Whether the log knows the invoice at all: a job, a delivery or an event names it."""
        with reading(self.engine, conn) as connected:
            return self.account_of(invoice_id, connected) is not None or connected.execute(
                select(events.c.id).where(events.c.invoice_id == invoice_id).limit(1)).first() is not None

    def accepted_at(self, job_id: str) -> datetime | None:
        """When intake accepted a job (None for a job that came another way)."""
        with self.engine.connect() as conn:
            found: datetime | None = conn.execute(_ACCEPTED_AT, {"job_id": job_id}).scalar()
            return found

    def template_source(self, version: str) -> str | None:
        with self.engine.connect() as conn:
            found: str | None = conn.execute(select(template_versions.c.source)
                                             .where(template_versions.c.version == version)).scalar()
            return found

    def dead_letters(self, job_id: str | None = None) -> list[dict[str, Any]]:
        query = select(dead_letters).order_by(dead_letters.c.id)
        if job_id is not None:
            query = query.where(dead_letters.c.job_id == job_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters kept, by where they were refused: the origin's first word (intake,
        reconcile, worker, template, channel, retries, queue), not the file and line
        intake adds to it."""
        counts: dict[str, int] = {}
        with self.engine.connect() as conn:
            for origin, count in conn.execute(select(dead_letters.c.origin, func.count())
                                              .group_by(dead_letters.c.origin)):
                word = (origin.split() or ["unknown"])[0]
                counts[word] = counts.get(word, 0) + int(count)
        return counts

    def escalations(self) -> list[dict[str, Any]]:
        """Open escalations (escalated, not paid or written off since, nor closed by an
        operator), oldest first, each with who took it (`assigned_to`, or None)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(events.c.id, events.c.invoice_id, events.c.account_id, events.c.job_id,
                                       events.c.detail, events.c.occurred_at)
                                .where(events.c.kind == Kind.INVOICE, events.c.status == InvoiceStatus.ESCALATED)
                                .order_by(events.c.id)).all()
            open_ = []
            for row in rows:
                closed = conn.execute(select(events.c.id).where(
                    events.c.invoice_id == row.invoice_id, events.c.id > row.id,
                    or_(and_(events.c.kind == Kind.INVOICE, events.c.status.in_(CLOSING)),
                        and_(events.c.kind == Kind.ESCALATION, events.c.status == CaseStatus.CLOSED))).limit(1)).first()
                if closed is None:
                    taken = conn.execute(select(events.c.detail).where(
                        events.c.invoice_id == row.invoice_id, events.c.id > row.id, events.c.kind == Kind.ESCALATION,
                        events.c.status == CaseStatus.ASSIGNED).order_by(events.c.id.desc()).limit(1)).scalar()
                    open_.append({**row._mapping, "assigned_to": (taken or {}).get("by")})
            return open_

    def history(self, account: str | None = None, invoice: str | None = None,
                since: datetime | None = None, job: str | None = None) -> Iterator[dict[str, Any]]:
        """Events in order, each with its delivery's fields when it has one."""
        query = (select(events, deliveries.c.delivery_key, deliveries.c.channel, deliveries.c.recipient,
                        deliveries.c.stage, deliveries.c.template, deliveries.c.template_version,
                        deliveries.c.reasons, deliveries.c.rules, deliveries.c.zones)
                 .select_from(events.outerjoin(deliveries, events.c.delivery_id == deliveries.c.id))
                 .order_by(events.c.id))
        if account:
            query = query.where(events.c.account_id == account)
        if invoice:
            query = query.where(events.c.invoice_id == invoice)
        if since:
            query = query.where(events.c.occurred_at >= since)
        if job:
            query = query.where(events.c.job_id == job)
        with self.engine.connect() as conn:  # read, then let go: no transaction held while the caller works
            rows = conn.execute(query).all()
        for row in rows:
            yield self.vault.open_row(row._mapping)


@contextmanager
def reading(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    """The caller's connection when given, else one of its own for a read."""
    if conn is not None:
        yield conn
    else:
        with engine.connect() as own:
            yield own


def _counted(rows: Iterable[Any], progress: Callable[[int], None]) -> Iterator[Any]:
    for number, row in enumerate(rows, 1):
        if number % 1000 == 0:
            progress(number)
        yield row


_LAST_VERIFIED = (select(events.c.detail, events.c.occurred_at)
                  .where(events.c.kind == Kind.ACCESS, events.c.status == "verified")
                  .order_by(events.c.id.desc()).limit(1))


def last_verification(engine: Engine) -> tuple[dict[str, Any], datetime] | None:
    """The last verification recorded by the console: its result and when."""
    with engine.connect() as conn:
        row = conn.execute(_LAST_VERIFIED).first()
    return (dict(row.detail or {}), row.occurred_at) if row is not None else None


def event_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


_INVOICE_STATES = {InvoiceStatus.PAID: "paid", InvoiceStatus.WRITTEN_OFF: "written-off",
                   InvoiceStatus.DISPUTED: "disputed", InvoiceStatus.RESOLVED: "open",
                   InvoiceStatus.PROMISED: "promised", InvoiceStatus.ESCALATED: "escalated"}
_FINAL = ("paid", "written-off")  # nothing reopens these


def invoice_state(history: Iterable[Mapping[str, Any]], today: date) -> str:
    """open, paid, written-off, disputed, promised (until a day not yet past) or escalated,
    from an invoice's events in order: what the API's invoice and the console's search say."""
    state = "open"
    for event in history:
        if event["kind"] == Kind.INVOICE and event["status"] in _INVOICE_STATES and state not in _FINAL:
            until = (event["detail"] or {}).get("until")
            if event["status"] != InvoiceStatus.PROMISED or (until and until >= today.isoformat()):
                state = _INVOICE_STATES[event["status"]]
    return state
