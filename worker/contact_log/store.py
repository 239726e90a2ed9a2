"""The contact log: every delivery attempt and every event, append-only, on SQLite or PostgreSQL.

Compliance reads this to prove what was sent, when and why, so rows are never
updated: a delivery is one row written when it is *claimed* (before the provider is
called), and everything that happens to it afterwards — sent, failed, delivered,
unknown, a provider callback — is a new event row. The unique delivery key is what
makes sending effectively-once on an at-least-once queue: a redelivered job finds
its delivery already claimed and looks at the latest event instead of sending again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import IntegrityError

from schedules.facts import Attempt, Facts, Payment
from worker.contact_log import chain as log_chain
from worker.masking import mask
from worker.messages.render import TemplateSource


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("the contact log stores aware datetimes only")
        moment = value.astimezone(UTC)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_key", String(300), nullable=False, unique=True),
    Column("job_id", String(200), nullable=False),
    Column("invoice_id", String(200), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("stage", String(64)),
    Column("template", String(200)),
    Column("template_version", String(64)),
    Column("reasons", JSON, nullable=False),
    Column("rules", JSON, nullable=False),
    Column("zones", JSON, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=False),
    Index("ix_deliveries_account_time", "account_id", "claimed_at"),
    Index("ix_deliveries_invoice_time", "invoice_id", "claimed_at"),
    Index("ix_deliveries_job", "job_id"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", Integer, ForeignKey("deliveries.id")),
    Column("job_id", String(200)),
    Column("invoice_id", String(200)),
    Column("account_id", String(200)),
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("provider", String(20)),
    Column("provider_message_id", String(300)),
    Column("error_code", String(20)),
    Column("error_text", Text),
    Column("detail", JSON),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("address", String(320)),  # the address an opt-out or invalid-address event is about
    Column("digest", String(64)),  # the hash chain (`worker.contact_log.chain`)
    Index("ix_events_delivery", "delivery_id", "id"),
    Index("ix_events_address", "address", "id"),
    Index("ix_events_provider_id", "provider_message_id"),
    Index("ix_events_invoice_time", "invoice_id", "occurred_at"),
    Index("ix_events_account_time", "account_id", "occurred_at"),
)

template_versions = Table(
    "template_versions", metadata,
    Column("version", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("source", Text, nullable=False),
    Column("first_used_at", UTCDateTime, nullable=False),
)

jobs = Table(
    "jobs", metadata,
    Column("job_id", String(200), primary_key=True),
    Column("invoice_id", String(200), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("queued_at", UTCDateTime),  # None: recorded, not (yet) on the queue or in the agenda
    Column("parent_id", String(200)),  # a cadence step: the registration that planned it
    Index("ix_jobs_invoice", "invoice_id"),
    Index("ix_jobs_unqueued", "queued_at", "received_at"),
)

dead_letters = Table(
    "dead_letters", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(200)),
    Column("origin", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_dead_letters_time", "received_at"),
)

# What a delivery's latest status says about the attempt, for caps and escalation.
_OUTCOMES = {"failed": "failed", "undelivered": "failed", "canceled": "failed", "no-answer": "no-answer",
             "busy": "busy", "voicemail": "voicemail", "completed": "conversation", "in-progress": "conversation"}
_VOICE_PENDING = "no-answer"  # a call still ringing counts as unanswered until it says otherwise
FACTS_LOOKBACK = timedelta(days=40)


# Built once: statements built per call cost more in SQLAlchemy than the insert itself.
_INSERT_DELIVERY = insert(deliveries)
_INSERT_EVENT = insert(events)
_CHAIN_HEAD = select(events.c.digest).order_by(events.c.id.desc()).limit(1)
_CHAIN_LOCK_KEY = int.from_bytes(hashlib.sha256(b"dunning:contact-log").digest()[:8], "big", signed=True)
_CHAINED = (select(events, *(deliveries.c[name].label(f"d_{name}") for name in log_chain.DELIVERY_FIELDS))
            .select_from(events.outerjoin(deliveries, events.c.delivery_id == deliveries.c.id)).order_by(events.c.id))
_UNCLAIMED = (select(deliveries.c.id).where(~deliveries.c.id.in_(
    select(events.c.delivery_id).where(events.c.kind == "delivery", events.c.status == "claimed")
    .where(events.c.delivery_id.is_not(None)))).order_by(deliveries.c.id))
FACT_KINDS = ("invoice", "account", "suppression")  # the events that change what `decide` may do


_DELIVERY_STATUS = (select(events.c.status).where(events.c.delivery_id == bindparam("delivery_id"))
                    .order_by(events.c.id.desc()).limit(1))
_DELIVERY_BY_KEY = select(deliveries.c.id, deliveries.c.claimed_at).where(deliveries.c.delivery_key == bindparam("key"))
_DELIVERY_OWNER = (select(deliveries.c.job_id, deliveries.c.invoice_id, deliveries.c.account_id)
                   .where(deliveries.c.id == bindparam("delivery_id")))
_LATEST_EVENT = (select(func.max(events.c.id)).where(events.c.delivery_id == deliveries.c.id)
                 .correlate(deliveries).scalar_subquery())
_CLAIMS = (select(func.count()).where(events.c.delivery_id == deliveries.c.id, events.c.kind == "delivery",
                                      events.c.status == "claimed").correlate(deliveries).scalar_subquery())
_ATTEMPTS = (select(deliveries.c.invoice_id, deliveries.c.job_id, deliveries.c.channel, deliveries.c.stage,
                    deliveries.c.recipient, deliveries.c.claimed_at, events.c.status, _CLAIMS.label("claims"))
             .join(events, events.c.id == _LATEST_EVENT)
             .where(deliveries.c.account_id == bindparam("account_id"), deliveries.c.claimed_at >= bindparam("since")))
_ABOUT = ((events.c.account_id == bindparam("account_id")) | (events.c.invoice_id == bindparam("invoice_id"))
          | events.c.address.in_(bindparam("addresses", expanding=True)))
_HAPPENINGS = (select(events.c.kind, events.c.status, events.c.invoice_id, events.c.detail, events.c.occurred_at,
                      events.c.error_code, events.c.address)
               .where(events.c.kind.in_(FACT_KINDS), _ABOUT).order_by(events.c.id))
_MARK = select(func.coalesce(func.max(events.c.id), 0))
_NEWER_FACTS = (select(events.c.id).where(events.c.id > bindparam("mark"), events.c.kind.in_(FACT_KINDS), _ABOUT)
                .limit(1))
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_SQLITE_WRITE_LOCK = text("UPDATE jobs SET job_id = job_id WHERE 0")
_ESCALATED = (select(events.c.id).where(events.c.invoice_id == bindparam("invoice_id"), events.c.kind == "invoice",
                                        events.c.status == "escalated").limit(1))
_ACCEPTED_AT = select(jobs.c.received_at).where(jobs.c.job_id == bindparam("job_id"))


def _claim_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (delivery_key) DO NOTHING RETURNING id: a claim never raises, so it
    can share a transaction with other writes (an error would abort a PostgreSQL transaction)."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(deliveries).on_conflict_do_nothing(index_elements=["delivery_key"]).returning(deliveries.c.id)


def _take_statement(dialect: str) -> Any:
    """INSERT INTO jobs ... ON CONFLICT (job_id) DO NOTHING RETURNING job_id."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(jobs).on_conflict_do_nothing(index_elements=["job_id"]).returning(jobs.c.job_id)


def _event(**values: Any) -> dict[str, Any]:
    """Every column given (None where absent), so all event inserts share one compiled form."""
    return {name: values.get(name) for name in log_chain.EVENT_FIELDS}


@dataclass(frozen=True)
class Claim:
    """What a delivery is about to send, and why: written before the provider is called."""

    delivery_key: str
    job_id: str
    invoice_id: str
    account_id: str
    channel: str
    recipient: str
    stage: str | None
    template: str | None
    template_version: str | None
    reasons: tuple[str, ...]
    rules: tuple[str, ...]
    zones: tuple[str, ...]


@dataclass(frozen=True)
class JobRow:
    """A job as intake records it: its ids, its JSON, and for a cadence step its registration."""

    job_id: str
    invoice_id: str
    account_id: str
    payload: str
    parent_id: str | None = None


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


@dataclass(frozen=True)
class Known:
    """Facts as read, with the id of the newest event at that moment: a claim made on
    these facts is refused if anything newer changed them (paid, opted out...)."""

    facts: Facts
    mark: int
    invoice_id: str
    account_id: str
    addresses: tuple[str, ...]


class ContactLog:
    """The log on one database; safe to share between threads of a process.

    Every write method takes an optional `conn`: given one, it writes inside that
    transaction (the worker's group commit, `worker.contact_log.writer`); otherwise it commits
    on its own.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._claim = _claim_statement(engine.dialect.name)
        self._take = _take_statement(engine.dialect.name)
        self._kept: set[str] = set()  # template versions known to be stored already

    @classmethod
    def open(cls, url: str, migrate: bool = True) -> ContactLog:
        """Open (and by default migrate) the log at a SQLAlchemy URL."""
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))  # a file needs no ping
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        if migrate:
            from worker.contact_log.migrations import upgrade

            upgrade(engine)
        return cls(engine)

    @contextmanager
    def _in(self, conn: Connection | None) -> Iterator[Connection]:
        """The caller's transaction when given (group commit, a lock held), else one of its own."""
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as own:
                yield own

    def claim(self, claim: Claim, now: datetime, *, decision: Mapping[str, Any] | None = None,
              known: Known | None = None, conn: Connection | None = None) -> Delivery | None:
        """Claim a delivery; if its key was claimed before, return that one as it stands.

        `decision` (the decision's JSON) is recorded in the same transaction, so a claimed
        delivery always has the decision that made it. With `known`, the claim is refused
        (None) when an event newer than those facts concerns the invoice, the account or
        an address — a payment recorded before the claim stops the send. The log's write
        lock is held from before the check (`lock`).
        """
        with self._in(conn) as c:
            self.lock(c)
            if decision is not None:
                self._append(c, _event(job_id=claim.job_id, invoice_id=claim.invoice_id,
                                       account_id=claim.account_id, kind="decision", status=decision.get("action"),
                                       detail=dict(decision), occurred_at=now, recorded_at=now))
            if known is not None and c.execute(_NEWER_FACTS, {
                    "mark": known.mark, "account_id": known.account_id, "invoice_id": known.invoice_id,
                    "addresses": list(known.addresses)}).first() is not None:
                return None
            row = {"delivery_key": claim.delivery_key, "job_id": claim.job_id, "invoice_id": claim.invoice_id,
                   "account_id": claim.account_id, "channel": claim.channel, "recipient": claim.recipient,
                   "stage": claim.stage, "template": claim.template, "template_version": claim.template_version,
                   "reasons": list(claim.reasons), "rules": list(claim.rules), "zones": list(claim.zones),
                   "claimed_at": now}
            delivery_id = c.execute(self._claim, row).scalar()
            if delivery_id is None:
                existing = self._delivery(c, claim.delivery_key)
                assert existing is not None  # the conflict was on this key
                return existing
            self._append(c, _event(delivery_id=delivery_id, job_id=claim.job_id, invoice_id=claim.invoice_id,
                                   account_id=claim.account_id, kind="delivery", status="claimed", occurred_at=now,
                                   recorded_at=now), delivery=row)
        return Delivery(int(delivery_id), claim.delivery_key, "claimed", now, fresh=True)

    def reclaim(self, delivery_id: int, now: datetime, why: str, conn: Connection | None = None) -> int:
        """Claim a delivery again before sending it again (its first attempt has no outcome):
        a second `claimed` event, covering the delivery row like the first, so exports,
        caps and the compliance view count the second contact. Returns the attempt number."""
        with self._in(conn) as c:
            self.lock(c)
            row = dict(c.execute(select(deliveries).where(deliveries.c.id == delivery_id)).mappings().one())
            attempt = 1 + int(c.execute(select(func.count()).where(
                events.c.delivery_id == delivery_id, events.c.kind == "delivery", events.c.status == "claimed"))
                .scalar_one())
            self._append(c, _event(delivery_id=delivery_id, job_id=row["job_id"], invoice_id=row["invoice_id"],
                                   account_id=row["account_id"], kind="delivery", status="claimed",
                                   detail={"attempt": attempt, "why": why}, occurred_at=now, recorded_at=now),
                         delivery=row)
        return attempt

    def lock(self, conn: Connection) -> None:
        """Take the log's write lock until this transaction ends: one writer at a time, on
        both databases. The hash chain needs it (each event's digest builds on the one
        before), and it makes a check read after it still true when the transaction writes
        (a payment against a claim, a second STOP against the first). PostgreSQL: an
        advisory lock, re-entrant. SQLite has one writer anyway, but takes its lock at the
        first write; a write that changes nothing takes it now (waiting `busy_timeout`)."""
        if conn.dialect.name == "sqlite":
            conn.execute(_SQLITE_WRITE_LOCK)
        elif conn.dialect.name == "postgresql":
            conn.execute(_ADVISORY_LOCK, {"key": _CHAIN_LOCK_KEY})

    def _append(self, conn: Connection, values: Mapping[str, Any], delivery: Mapping[str, Any] | None = None) -> None:
        """Insert one event, linked into the chain (`worker.contact_log.chain`). The first append
        of a transaction takes the lock and reads the head; while the lock is held nobody
        else appends, so the next ones link to what this transaction wrote last."""
        transaction = conn.get_transaction()
        held = conn.info.get("chain")
        if held is not None and held[0] is transaction:
            previous = held[1]
        else:
            self.lock(conn)
            previous = conn.execute(_CHAIN_HEAD).scalar() or log_chain.GENESIS
        linked = log_chain.digest(previous, values, delivery)
        conn.execute(_INSERT_EVENT, {**values, "digest": linked})
        conn.info["chain"] = (transaction, linked)

    def verify(self, head: str | None = None) -> log_chain.Verdict:
        """Recompute the hash chain over every event (and every claimed delivery)."""
        with self.engine.connect() as conn:
            verdict = log_chain.verify(conn.execution_options(yield_per=2000).execute(_CHAINED).mappings(), head)
            for delivery_id in conn.execute(_UNCLAIMED).scalars():
                verdict.problems.append(f"delivery {delivery_id}: no claimed event, so outside the chain")
        return verdict

    def delivery(self, key: str) -> Delivery | None:
        """A delivery with its latest status."""
        with self.engine.connect() as conn:
            return self._delivery(conn, key)

    @staticmethod
    def _delivery(conn: Connection, key: str) -> Delivery | None:
        row = conn.execute(_DELIVERY_BY_KEY, {"key": key}).first()
        if row is None:
            return None
        status = conn.execute(_DELIVERY_STATUS, {"delivery_id": row.id}).scalar_one()
        return Delivery(row.id, key, status, row.claimed_at)

    def record(self, kind: str, status: str, now: datetime, *, delivery_id: int | None = None,
               job_id: str | None = None, invoice_id: str | None = None, account_id: str | None = None,
               provider: str | None = None, provider_message_id: str | None = None, error_code: str | None = None,
               error_text: str | None = None, detail: Mapping[str, Any] | None = None,
               occurred_at: datetime | None = None, address: str | None = None,
               conn: Connection | None = None) -> None:
        """Append one event (a decision, a status change, a provider callback...).

        An event about a delivery is filed under the delivery's job, invoice and account.
        """
        with self._in(conn) as c:
            if delivery_id is not None and account_id is None:
                owner = c.execute(_DELIVERY_OWNER, {"delivery_id": delivery_id}).one()
                job_id, invoice_id, account_id = owner.job_id, owner.invoice_id, owner.account_id
            self._append(c, _event(
                delivery_id=delivery_id, job_id=job_id, invoice_id=invoice_id, account_id=account_id, kind=kind,
                status=status, provider=provider, provider_message_id=provider_message_id, error_code=error_code,
                error_text=error_text, detail=dict(detail) if detail is not None else None,
                occurred_at=occurred_at or now, recorded_at=now, address=address.casefold() if address else None))

    def keep_templates(self, sources: Iterable[TemplateSource], now: datetime) -> None:
        """Keep each template version's source once, so any message can be reproduced."""
        for source in sources:
            if source.version in self._kept:
                continue
            try:
                with self.engine.begin() as conn:
                    if conn.execute(select(template_versions.c.version)
                                    .where(template_versions.c.version == source.version)).first() is None:
                        conn.execute(insert(template_versions).values(
                            version=source.version, name=source.name, source=source.source, first_used_at=now))
            except IntegrityError:
                pass  # another process kept it first
            self._kept.add(source.version)

    def template_source(self, version: str) -> str | None:
        with self.engine.connect() as conn:
            found: str | None = conn.execute(select(template_versions.c.source)
                                             .where(template_versions.c.version == version)).scalar()
            return found

    def accept_job(self, job_id: str, invoice_id: str, account_id: str, payload: str, now: datetime) -> bool:
        """Record a job as accepted and queued at once (the simulator's intake, which has no
        queue to miss); False if its job_id was accepted before (one reminder)."""
        taken, _dup = self.take_jobs([JobRow(job_id, invoice_id, account_id, payload)], now)
        self.mark_queued(taken, now)
        return bool(taken)

    def take_jobs(self, rows: Iterable[JobRow], now: datetime) -> tuple[list[str], list[str]]:
        """Record jobs before they are queued: (taken, duplicates).

        Taken: new ids, and ids recorded before but never queued (an intake that failed
        or died before the queue had them: this one queues them, with its payload).
        Duplicates: ids already queued, or taken by another intake at this moment, or
        repeated in `rows`. One transaction for the batch; the caller queues what it took,
        then `mark_queued` — or `release` when the queue refused them.
        """
        wanted: dict[str, JobRow] = {}
        duplicates: list[str] = []
        for row in rows:
            (duplicates.append(row.job_id) if row.job_id in wanted else wanted.__setitem__(row.job_id, row))
        if not wanted:
            return [], duplicates
        taken: list[str] = []
        with self.engine.begin() as conn:
            known: dict[str, Any] = {}
            ids = list(wanted)
            for start in range(0, len(ids), 500):
                known.update((row.job_id, row.queued_at) for row in conn.execute(
                    select(jobs.c.job_id, jobs.c.queued_at).where(jobs.c.job_id.in_(ids[start:start + 500]))))
            fresh = [wanted[i] for i in ids if i not in known]
            if fresh:
                inserted = set(conn.execute(self._take, [
                    {"job_id": r.job_id, "invoice_id": r.invoice_id, "account_id": r.account_id,
                     "payload": r.payload, "received_at": now, "parent_id": r.parent_id} for r in fresh]).scalars())
                taken.extend(r.job_id for r in fresh if r.job_id in inserted)
                duplicates.extend(r.job_id for r in fresh if r.job_id not in inserted)
            for job_id, queued_at in known.items():
                if queued_at is not None:
                    duplicates.append(job_id)
                    continue
                row = wanted[job_id]
                conn.execute(jobs.update().where(jobs.c.job_id == job_id, jobs.c.queued_at.is_(None))
                             .values(payload=row.payload, received_at=now, parent_id=row.parent_id))
                taken.append(job_id)
        return taken, duplicates

    def mark_queued(self, job_ids: Iterable[str], now: datetime) -> None:
        """These jobs are on the queue (or in the agenda) now: accepted for good."""
        ids = list(job_ids)
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(jobs.update().where(jobs.c.job_id.in_(ids[start:start + 500]),
                                                 jobs.c.queued_at.is_(None)).values(queued_at=now))

    def release(self, job_ids: Iterable[str]) -> None:
        """The queue did not take these jobs: forget them, so that nothing says they were
        accepted and the caller's retry takes them as new."""
        ids = list(job_ids)
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(jobs.delete().where(jobs.c.job_id.in_(ids[start:start + 500]),
                                                 jobs.c.queued_at.is_(None)))

    def unqueued(self, before: datetime, limit: int = 500) -> list[dict[str, Any]]:
        """Jobs recorded before `before` and never queued, registrations and plain jobs
        (a cadence step goes with its registration): what the reconciler queues."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(jobs.c.job_id, jobs.c.payload, jobs.c.received_at)
                .where(jobs.c.queued_at.is_(None), jobs.c.received_at < before, jobs.c.parent_id.is_(None))
                .order_by(jobs.c.received_at).limit(limit))]

    def suppress(self, account_id: str | None, address: str, channel: str, reason: str, now: datetime,
                 code: str | None = None, conn: Connection | None = None, by: str | None = None) -> None:
        """Stop contacting an address (invalid, opted out): read back by `facts_for`. With a
        `code` (a provider's error), it is an invalid address, which no opt-in undoes."""
        detail = {"address": address, "channel": channel, **({"by": by} if by else {})}
        self.record("suppression", "suppressed", now, account_id=account_id, error_code=code, error_text=reason,
                    detail=detail, address=address, conn=conn)

    def escalate(self, job_id: str, invoice_id: str, account_id: str, reasons: Iterable[str], now: datetime,
                 conn: Connection | None = None) -> bool:
        """Hand the invoice to a person; False if it already was (escalated once, notified once)."""
        with self._in(conn) as c:
            self.lock(c)
            if c.execute(_ESCALATED, {"invoice_id": invoice_id}).first() is not None:
                return False
            self.record("invoice", "escalated", now, job_id=job_id, invoice_id=invoice_id, account_id=account_id,
                        detail={"reasons": list(reasons)}, conn=c)
        return True

    def escalations(self) -> list[dict[str, Any]]:
        """Open escalations (escalated, not paid or written off since), oldest first, with the invoice's last job."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(events.c.id, events.c.invoice_id, events.c.account_id, events.c.job_id,
                                       events.c.detail, events.c.occurred_at)
                                .where(events.c.kind == "invoice", events.c.status == "escalated")
                                .order_by(events.c.id)).all()
            open_ = []
            for row in rows:
                closed = conn.execute(select(events.c.id).where(
                    events.c.invoice_id == row.invoice_id, events.c.kind == "invoice", events.c.id > row.id,
                    events.c.status.in_(("paid", "written-off"))).limit(1)).first()
                if closed is None:
                    open_.append(dict(row._mapping))
            return open_

    def suppressed(self, address: str) -> bool:
        """Whether nothing may be sent to `address` now (opted out, or proven invalid)."""
        with self.engine.connect() as conn:
            opted_out, invalid = _suppressions(conn, address)
        return bool(opted_out | invalid)

    def opt_out(self, account_id: str | None, address: str, channel: str, reason: str, now: datetime,
                by: str) -> bool:
        """A person asked for no more messages to `address`; False if they already had.

        Checked and recorded under the log's write lock (`lock`), so two STOP replies handled at
        once by two processes record one opt-out and earn one confirmation."""
        with self.engine.begin() as conn:
            self.lock(conn)
            opted_out, _invalid = _suppressions(conn, address)
            if opted_out:
                return False
            self.suppress(account_id, address, channel, reason, now, conn=conn, by=by)
        return True

    def by_provider_id(self, provider_message_id: str, conn: Connection | None = None) -> ProviderDelivery | None:
        """The delivery a provider's id (a Twilio SID) belongs to, with the callback
        statuses applied to it so far, oldest first."""
        with self._in(conn) as conn:
            row = conn.execute(select(deliveries.c.id, deliveries.c.job_id, deliveries.c.invoice_id,
                                      deliveries.c.account_id, deliveries.c.channel, deliveries.c.recipient)
                               .join(events, events.c.delivery_id == deliveries.c.id)
                               .where(events.c.provider_message_id == provider_message_id).limit(1)).first()
            if row is None:
                return None
            applied = [r.status for r in conn.execute(
                select(events.c.status, events.c.detail).where(events.c.delivery_id == row.id,
                                                               events.c.kind == "delivery").order_by(events.c.id))
                if (r.detail or {}).get("callback")]
        return ProviderDelivery(row.id, row.job_id, row.invoice_id, row.account_id, row.channel, row.recipient,
                                tuple(applied))

    def account_of(self, invoice_id: str, conn: Connection | None = None) -> str | None:
        """The account an invoice belongs to, from the jobs accepted for it."""
        query = select(jobs.c.account_id).where(jobs.c.invoice_id == invoice_id).limit(1)
        if conn is not None:
            return conn.execute(query).scalar()
        with self.engine.connect() as own:
            return own.execute(query).scalar()

    def facts_for(self, account_id: str, invoice_id: str, job_id: str, now: datetime,
                  addresses: Iterable[str] = ()) -> Facts:
        """What `decide` needs to know, from the log: attempts across all of the debtor's
        invoices (caps hold per person), suppressions of the account or of any of its
        `addresses` (an opt-out may name only the address), and the invoice's own events."""
        return self.known(account_id, invoice_id, job_id, now, addresses).facts

    def known(self, account_id: str, invoice_id: str, job_id: str, now: datetime,
              addresses: Iterable[str] = ()) -> Known:
        """`facts_for`, with the mark that `claim` checks against."""
        wanted = tuple(a.casefold() for a in addresses)  # Zhang@X and zhang@x are one person's mailbox
        attempts: list[Attempt] = []
        failed_here: set[Any] = set()
        state: dict[str, Any] = {"paid": False, "written_off": False, "disputed": False, "promised_until": None,
                                 "ceased": False, "escalated": False}
        opted_out: set[str] = set()
        invalid: set[str] = set()
        media: set[Any] = set()
        payments: list[Payment] = []
        with self.engine.connect() as conn:
            mark = int(conn.execute(_MARK).scalar_one())
            for row in conn.execute(_ATTEMPTS, {"account_id": account_id, "since": now - FACTS_LOOKBACK}):
                if row.job_id == job_id and row.status == "failed":
                    failed_here.add(row.channel)
                if row.job_id == job_id and (row.status in ("claimed", "retry")
                                             or row.status == "unknown" and row.channel == "email"):
                    continue  # this job's own unfinished delivery, about to be (re)sent: not a past contact
                outcome = _OUTCOMES.get(row.status) or (_VOICE_PENDING if row.channel == "voice" else "delivered")
                attempt = Attempt(invoice_id=row.invoice_id, channel=row.channel, stage=row.stage,
                                  at=row.claimed_at, outcome=outcome, address=row.recipient)  # type: ignore[arg-type]
                attempts.extend([attempt] * max(1, int(row.claims or 1)))  # a resend is a contact too
            for event_row in conn.execute(_HAPPENINGS, {"account_id": account_id, "invoice_id": invoice_id,
                                                        "addresses": list(wanted)}):  # in order: the last word wins
                detail = event_row.detail or {}
                if event_row.kind == "invoice" and event_row.invoice_id == invoice_id:
                    if event_row.status == "payment":
                        payments.append(Payment(at=event_row.occurred_at, amount=Decimal(str(detail["amount"]))))
                    _apply_invoice_event(state, event_row.status, detail)
                elif event_row.kind == "account":
                    state["ceased"] = event_row.status == "ceased"
                elif event_row.kind == "suppression":
                    _apply_suppression(event_row, detail, opted_out, invalid, media)
        facts = Facts(**state, suppressed_addresses=frozenset(opted_out), invalid_addresses=frozenset(invalid),
                      suppressed_channels=frozenset(media), failed_channels=frozenset(failed_here),
                      attempts=tuple(attempts), payments=tuple(payments))
        return Known(facts, mark, invoice_id, account_id, wanted)

    def accepted_at(self, job_id: str) -> datetime | None:
        """When intake accepted a job (None for a job that came another way)."""
        with self.engine.connect() as conn:
            found: datetime | None = conn.execute(_ACCEPTED_AT, {"job_id": job_id}).scalar()
            return found

    def dead_letter(self, origin: str, reason: str, payload: str, now: datetime, job_id: str | None = None,
                    conn: Connection | None = None) -> None:
        """Keep a rejected or failed job with the reason: never silently dropped, whatever its
        bytes (a NUL or a lone surrogate, which no database stores, is kept escaped)."""
        with self._in(conn) as c:
            c.execute(insert(dead_letters).values(job_id=storable(job_id)[:200] if job_id else None,
                                                  origin=storable(origin)[:100], reason=storable(reason),
                                                  payload=storable(payload), received_at=now))

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(dead_letters).order_by(dead_letters.c.id))]

    def history(self, account: str | None = None, invoice: str | None = None,
                since: datetime | None = None) -> Iterator[dict[str, Any]]:
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
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                yield dict(row._mapping)


def storable(text: str) -> str:
    """Text any database keeps: NUL and unpaired surrogates written as escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\u0000")


def _suppressions(conn: Connection, address: str) -> tuple[set[str], set[str]]:
    """(opted out, proven invalid): the address, in each set it is in now."""
    opted_out: set[str] = set()
    invalid: set[str] = set()
    for row in conn.execute(select(events.c.status, events.c.detail, events.c.error_code, events.c.address)
                            .where(events.c.kind == "suppression", events.c.address == address.casefold())
                            .order_by(events.c.id)):
        _apply_suppression(row, row.detail or {}, opted_out, invalid, set())
    return opted_out, invalid


def _apply_suppression(row: Any, detail: Mapping[str, Any], opted_out: set[str], invalid: set[str],
                       media: set[Any]) -> None:
    """An opt-out (or opt-in) of an address or a medium; a provider-proven invalid address
    (it carries the provider's error code) stays suppressed whatever the person texts."""
    if row.address or detail.get("address"):
        address = str(row.address or detail["address"]).casefold()
        if row.status == "suppressed":
            (invalid if row.error_code else opted_out).add(address)
        else:
            opted_out.discard(address)
    elif detail.get("channel"):
        if row.status == "suppressed":
            media.add(detail["channel"])
        else:
            media.discard(detail["channel"])


def _apply_invoice_event(state: dict[str, Any], status: str, detail: Mapping[str, Any]) -> None:
    if status == "paid":
        state["paid"] = True
    elif status == "written-off":
        state["written_off"] = True
    elif status == "disputed":
        state["disputed"] = True
    elif status == "resolved":
        state["disputed"] = False
    elif status == "promised":
        state["promised_until"] = date.fromisoformat(str(detail["until"]))
    elif status == "escalated":
        state["escalated"] = True


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL keeps readers and the writer apart; NORMAL sync is crash-safe per transaction in WAL."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


EXPORT_FIELDS = ("id", "occurred_at", "recorded_at", "kind", "status", "job_id", "invoice_id", "account_id",
                 "delivery_key", "channel", "recipient", "stage", "template", "template_version", "provider",
                 "provider_message_id", "error_code", "error_text", "reasons", "rules", "zones", "detail", "digest")


def for_export(row: Mapping[str, Any], unmasked: bool = False) -> dict[str, Any]:
    """One history row as plain values (ISO times), personal data masked unless asked."""
    out: dict[str, Any] = {}
    for name in EXPORT_FIELDS:
        value = row.get(name)
        if isinstance(value, datetime):
            value = value.isoformat()
        if name == "recipient" and value and not unmasked:
            value = mask("address", value)
        out[name] = value
    return out


def to_json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)
