"""The contact log's tables (SQLAlchemy Core), and how a database is opened.

The schema changes only by migration (`migrations/`, Alembic); `open_engine` never
changes it. Rows are never updated, except a job's `queued_at` (intake's bookkeeping,
outside the chain) and, at an erasure, what the chain does not cover: the blind-index
columns and a job's JSON (`vault.Vault.destroy`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Dialect


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
    Column("recipient", Text, nullable=False),  # sealed (`vault.py`)
    Column("recipient_index", String(64)),  # its blind index: outside the chain, cleared by erasure
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
    Index("ix_deliveries_recipient_index", "recipient_index"),  # the console's search by address
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
    Column("address", Text),  # the address an opt-out or invalid-address event is about, sealed
    Column("digest", String(64)),  # the hash chain (`worker.contact_log.chain`)
    Column("address_index", String(64)),  # the address's blind index: outside the chain, cleared by erasure
    Column("chain", Integer),  # which of the log's chains (`worker.contact_log.chain`); None: chain 0, the first
    Column("position", BigInteger),  # its place in that chain: 1, 2, 3... with no gap
    Index("ux_events_chain_position", "chain", "position", unique=True),
    Index("ix_events_delivery", "delivery_id", "kind", "status", "id"),  # its latest status, its claims
    Index("ix_events_account_kind", "account_id", "kind", "status", "id"),  # its newest claim (`facts.known`)
    Index("ix_events_address_index", "address_index", "id"),
    Index("ix_events_provider_id", "provider_message_id"),
    Index("ix_events_invoice_time", "invoice_id", "occurred_at"),
    Index("ix_events_account_time", "account_id", "occurred_at"),
    Index("ix_events_kind", "kind", "status", "id"),  # the latest of a kind: escalations, verifications
)

chains = Table(  # the log's chains: one row each, the row a writer locks to append to it
    "chains", metadata,
    Column("chain", Integer, primary_key=True, autoincrement=False),  # 1..K; 0 is the single chain of before
    Column("size", BigInteger),  # chain 0 only: closed, its size and head as they were when the chains began
    Column("head", String(64)),
)

checkpoints = Table(  # signed notes of every chain's size and head (`worker.contact_log.checkpoints`)
    "checkpoints", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("made_at", UTCDateTime, nullable=False),
    Column("size", BigInteger, nullable=False),  # events in all chains
    Column("note", Text, nullable=False),
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
    Column("account_id", String(200)),  # when the payload names one: erasure removes its dead letters
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_dead_letters_time", "received_at"),
    Index("ix_dead_letters_account", "account_id"),
)

party_marks = Table(  # who a job names, as blind indexes: how a person is found (`parties.py`)
    "party_marks", metadata,
    Column("mark", String(32), nullable=False),  # HMAC of the normalised value (`Vault.index`); "" while pending
    Column("kind", String(10), nullable=False),  # `parties.Named`: account, email, phone, name, company
    Column("account_id", String(200), nullable=False),
    PrimaryKeyConstraint("mark", "kind", "account_id"),
    Index("ix_party_marks_account", "account_id"),
)

data_keys = Table(  # a data key per account (or per address named without one), wrapped by the master key
    "data_keys", metadata,
    Column("key_id", String(32), primary_key=True),  # named in every value sealed under it
    Column("account_id", String(200), unique=True),
    Column("address_index", String(64), unique=True),  # an address's own key: events with no account
    Column("wrapped", Text, nullable=False),  # `sealing.wrap`; deleted by erasure, which is the point
)


api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),  # the key's first characters, to tell keys apart
    Column("digest", String(64), nullable=False, unique=True),  # SHA-256 of the key: the key is kept nowhere
    Column("scopes", String(200), nullable=False),  # comma-separated: jobs:write, events:write, read
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

idempotency = Table(
    "idempotency", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("api_key", String(100), nullable=False),  # the API key's name: keys are scoped to their caller
    Column("key", String(255), nullable=False),  # the caller's Idempotency-Key
    Column("body_hash", String(64), nullable=False),
    Column("status", Integer),  # None while the first request is still running
    Column("response", Text),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("api_key", "key", name="uq_idempotency_key"),
    Index("ix_idempotency_created", "created_at"),
)

webhooks = Table(  # the outbox: what the billing system is still to be told (outside the chain)
    "webhooks", metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=False),  # the event it reports
    Column("type", String(40), nullable=False),  # reminder.sent, ... (`webhooks.topic`)
    Column("invoice_id", String(200)),  # delivered in order per invoice
    Column("state", String(20), nullable=False),  # `webhooks.outbox.HookState`
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),  # also the lease: moved ahead by whoever sends it
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_status", Integer),  # the endpoint's last HTTP status, None for no answer
    Column("last_error", String(200)),
    Index("ix_webhooks_due", "state", "next_attempt_at"),
    Index("ix_webhooks_invoice", "invoice_id", "state", "event_id"),
)

webhook_endpoints = Table(  # each endpoint's place in the log, and whether it answered 410 Gone
    "webhook_endpoints", metadata,
    Column("url_hash", String(64), primary_key=True),  # SHA-256 of the URL, which may carry a token
    Column("host", String(255), nullable=False),
    Column("cursor", Integer, nullable=False),  # the last event looked at for it
    Column("stopped_at", UTCDateTime),  # when it answered 410 Gone (None: sending)
    Column("stopped_by", String(100)),  # the message the 410 answered
)


users = Table(  # the console's people: passwords as argon2 hashes only
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),  # compliance, operator, admin
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("password_changed_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime),
)

sessions = Table(  # a signed-in person's session: the cookie holds the token, this its SHA-256
    "sessions", metadata,
    Column("digest", String(64), primary_key=True),
    Column("user_name", String(100), nullable=False),
    Column("csrf", String(64), nullable=False),  # the token every form of this session carries
    Column("address", String(64)),  # where it was opened from
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Index("ix_sessions_user", "user_name"),
)

templates = Table(  # the operator's templates, every version: drafts, awaiting approval, live, retired
    "templates", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),  # zh-CN/due_day.sms.j2, email.html.j2
    Column("version", String(64), nullable=False),  # the SHA-256 of the source, as deliveries record it
    Column("source", Text, nullable=False),
    Column("state", String(20), nullable=False),  # `messages.library.VersionState`
    Column("author", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("note", Text),  # imported from a folder, rolled back to a version
    Column("published_by", String(100)),
    Column("published_at", UTCDateTime),
    Column("approved_by", String(100)),
    Column("approved_at", UTCDateTime),
    Column("live_seq", Integer, unique=True),  # numbered as it goes live: the workers' cue to read again
    Index("ix_templates_name", "name", "id"),
)

sign_in_failures = Table(  # recent failed sign-ins, to slow the next per name and per address
    "sign_in_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_name", String(100), nullable=False),
    Column("address", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_sign_in_failures_user", "user_name", "at"),
    Index("ix_sign_in_failures_address", "address", "at"),
)


def open_engine(url: str) -> Engine:
    """An engine on the log's database (a SQLite file's folder is created)."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))  # a file needs no ping
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgresql_settings)
    return engine


def _postgresql_settings(connection: Any, _record: Any) -> None:
    """Plan each statement for the values it is given. psycopg prepares a statement run
    five times, and PostgreSQL then keeps a generic plan if it looks no dearer — judged
    on the tables as they were then: a log that started empty kept a claim's check for
    news walking every event (4.2 ms a claim at 6,000 reminders, and growing;
    bench/throughput.py --database postgresql). Planning these statements costs far less."""
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    connection.commit()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL keeps readers and the writer apart; NORMAL sync is crash-safe per transaction in WAL.
    secure_delete overwrites what is deleted: an erased account's key must not linger in
    the file's free pages."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

