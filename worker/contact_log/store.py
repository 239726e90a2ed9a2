"""The contact log's only writer: every write goes through here, linked into one of the
log's hash chains (`chain.py`) under that chain's lock.

Rows are never updated: a delivery is one row written when it is *claimed* (before the
provider is called), and everything that happens to it afterwards — sent, failed,
delivered, unknown, a provider callback — is a new event row. The unique delivery key
is what makes sending effectively-once on an at-least-once queue: a redelivered job
finds its delivery already claimed and looks at the latest event instead of sending
again.

Locks: a writer holds the lock of the chain it appends to, and of the chain of any
address its event is about, from before its checks until it commits (`lock`). So a
check read under them stays true until the write — a payment against a claim (one
account, one chain), a second STOP against the first, an opt-out by address against a
claim to that address from another account (the address's lock). Locks are taken in
ascending order, all a transaction needs at once where it can say them first.

Every write method takes an optional `conn`: given one, it writes inside that
transaction (the worker's group commit, `writer.py`); otherwise it commits on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, Self

from sqlalchemy import Engine, bindparam, func, insert, select, text
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import BindParameter

from worker.contact_log import chain
from worker.contact_log.facts import Known, changed_since, suppressions
from worker.contact_log.kinds import FACT_KINDS, DeliveryStatus, Event, InvoiceStatus, Kind, SuppressionStatus
from worker.contact_log.queries import Delivery, find_delivery
from worker.db import migrations
from worker.db.schema import chains, dead_letters, deliveries, events, open_engine, template_versions
from worker.db.vault import Vault
from worker.errors import SchemaError

# Built once: statements built per call cost more in SQLAlchemy than the insert itself.
_INSERT_EVENT = insert(events)
_CHAINS: BindParameter[int] = bindparam("chains", expanding=True)
_CHAIN_COUNT = select(func.count()).select_from(chains).where(chains.c.chain > 0)
_LOCK_CHAINS = text("SELECT locked_chain, last_position, last_digest "
                    "FROM dunning_lock_chains(CAST(:wanted AS integer[]))")
_LAST_OF_CHAIN = (select(events.c.position, events.c.digest).where(events.c.chain == chains.c.chain)
                  .order_by(events.c.position.desc()).limit(1).correlate(chains))
_HEADS = select(chains.c.chain, _LAST_OF_CHAIN.with_only_columns(events.c.position).scalar_subquery(),
                _LAST_OF_CHAIN.with_only_columns(events.c.digest).scalar_subquery()).where(chains.c.chain.in_(_CHAINS))
_SHARE_CHAINS = text("SELECT pg_advisory_xact_lock_shared(727003, k) FROM generate_series(1, :count) AS k")
_NEWEST_ID = select(func.coalesce(func.max(events.c.id), 0))
_SQLITE_WRITE_LOCK = text("UPDATE jobs SET job_id = job_id WHERE 0")
_DELIVERY_OWNER = (select(deliveries.c.job_id, deliveries.c.invoice_id, deliveries.c.account_id)
                   .where(deliveries.c.id == bindparam("delivery_id")))
_ESCALATED = (select(events.c.id).where(events.c.invoice_id == bindparam("invoice_id"), events.c.kind == Kind.INVOICE,
                                        events.c.status == InvoiceStatus.ESCALATED).limit(1))


class TemplateVersion(Protocol):
    """A template file as used: its name, the SHA-256 of its source, the source."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def source(self) -> str: ...


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
    message: Mapping[str, Any] | None = None  # what reproduces the message: its digest, template versions, inputs
    recipient_index: str | None = None  # set by `Store.sealed`, with the recipient sealed




def insert_or_nothing(dialect: str, table: Any, key: str) -> Any:
    """INSERT ... ON CONFLICT (key) DO NOTHING RETURNING key: never raises, so it can share
    a transaction with other writes (an error would abort a PostgreSQL transaction)."""
    module = postgresql if dialect == "postgresql" else sqlite
    returned = table.c.id if key == "delivery_key" else table.c[key]
    return module.insert(table).on_conflict_do_nothing(index_elements=[key]).returning(returned)


def _row(event: Event, now: datetime) -> dict[str, Any]:
    """Every column given (None where absent), so all event inserts share one compiled form.
    Read field by field: `dataclasses.asdict` deep-copies, and this runs for every event."""
    return {"delivery_id": event.delivery_id, "job_id": event.job_id, "invoice_id": event.invoice_id,
            "account_id": event.account_id, "kind": event.kind, "status": event.status, "provider": event.provider,
            "provider_message_id": event.provider_message_id, "error_code": event.error_code,
            "error_text": event.error_text, "detail": dict(event.detail) if event.detail is not None else None,
            "occurred_at": event.occurred_at or now, "recorded_at": now,
            "address": event.address.casefold() if event.address else None}


class Store:
    """The log's writes (mixed into `ContactLog`); safe to share between threads."""

    def __init__(self, engine: Engine, master_key: bytes | None = None) -> None:
        self.engine = engine
        self.vault = Vault(engine, master_key)  # personal values sealed as written, opened as read
        self._claim = insert_or_nothing(engine.dialect.name, deliveries, "delivery_key")
        self._kept: set[str] = set()  # template versions known to be stored already
        self._count: int | None = None  # K, the log's chains: read once, fixed for the log's life
        if not sqlalchemy_event.contains(engine, "before_execute", Store._flush):
            sqlalchemy_event.listen(engine, "before_execute", Store._flush)
            sqlalchemy_event.listen(engine, "commit", Store._flush)

    @classmethod
    def open(cls, url: str, master_key: bytes | None = None) -> Self:
        """Open the log at a SQLAlchemy URL. The schema is left as it is (`migrate`).
        Without `master_key` (`DUNNING_MASTER_KEY`), personal values read `[sealed]` and
        none can be written; the chain verifies either way."""
        return cls(open_engine(url), master_key)

    def migrate(self, chains: int | None = None) -> Self:
        """Bring the schema up to date (Alembic); safe when several processes start at once.
        `chains` is K for a log created now (ignored for one that has its chains)."""
        migrations.upgrade(self.engine, chains=chains)
        return self

    def require_schema(self) -> None:
        """Raise `SchemaError` unless the schema is this version's (a read, no write)."""
        if migrations.pending(self.engine):
            raise SchemaError("the contact log's schema is not up to date: run `dunning migrate` "
                              "(dunning worker and dunning serve also migrate as they start)")

    def chain_count(self, conn: Connection | None = None) -> int:
        """K: how many chains this log has (recorded when it was created)."""
        if self._count is None:
            with self.within_read(conn) as c:
                self._count = int(c.execute(_CHAIN_COUNT).scalar_one())
        return self._count

    def chains_of(self, accounts: Iterable[str | None] = (), indexes: Iterable[str] = ()) -> set[int]:
        """The chains whose locks a write about these accounts and addresses holds: each
        account's (None: the house's) and each address's (by its blind index, `Vault.index`)."""
        count = self.chain_count()
        found = {chain.of_account(a, count) if a is not None else chain.of_house(count) for a in accounts}
        return found | {chain.of_address(index, count) for index in indexes}

    @contextmanager
    def locked(self, conn: Connection | None = None, *, accounts: Iterable[str | None] = (),
               indexes: Iterable[str] = (), house: bool = False) -> Iterator[Connection]:
        """A transaction (the caller's, given `conn`, or a new one committed on leaving)
        holding the locks of these accounts' and addresses' chains (`chains_of`), and the
        house's (people, keys, templates) with `house`; with none of them, of every
        chain: the whole log, as for a rotation of its keys. Checks read inside it about
        them stay true until it writes."""
        accounts, indexes = [*accounts, *([None] if house else [])], list(indexes)
        numbers = self.chains_of(accounts, indexes) if accounts or indexes else None
        with self.within(conn) as c:
            self.lock(c, numbers)
            yield c

    @contextmanager
    def within(self, conn: Connection | None) -> Iterator[Connection]:
        """The caller's transaction when given (group commit, a lock held), else one of its own."""
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as own:
                yield own

    @contextmanager
    def within_read(self, conn: Connection | None) -> Iterator[Connection]:
        """The caller's connection when given, else a read-only one of its own."""
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as own:
                yield own

    def lock(self, conn: Connection, numbers: Collection[int] | None = None) -> None:
        """Take these chains' locks (None: every chain) until this transaction ends, and
        read their heads: PostgreSQL's advisory locks (727003, chain) in ascending order,
        so two writers never wait for each other in a circle; then each chain's last position and
        digest, read after the wait so they are the ones the holder before committed —
        both in one round trip (`dunning_lock_chains`, migration 0013). Held locks are
        not taken again. A chain a transaction finds it needs later (after a higher one)
        is still taken: PostgreSQL breaks the rare circle that may make, failing one
        transaction, which is then retried.
        SQLite has one writer anyway, but takes its lock at the first write; a write
        that changes nothing takes it now (waiting `busy_timeout`)."""
        held = self._held(conn)
        wanted = range(1, self.chain_count(conn) + 1) if numbers is None else numbers
        missing = sorted(set(wanted) - held.keys())
        if not missing:
            return
        if conn.dialect.name == "postgresql":  # locks and heads in one round trip (migration 0013)
            held.update((int(number), (int(position or 0), head or chain.GENESIS))
                        for number, position, head in conn.execute(_LOCK_CHAINS, {"wanted": missing}))
        else:
            conn.execute(_SQLITE_WRITE_LOCK)
            held.update(self.chain_heads(conn, missing))

    @staticmethod
    def chain_heads(conn: Connection, numbers: Iterable[int]) -> dict[int, tuple[int, str]]:
        """These chains' last positions and digests (0 and the genesis for an empty one),
        in one statement: one snapshot of them all."""
        return {int(number): (int(position or 0), head or chain.GENESIS)
                for number, position, head in conn.execute(_HEADS, {"chains": list(numbers)})}

    def settled(self) -> int:
        """The newest event id at or below which every event is committed: where a reader
        that walks the log by id (the webhooks' cursor) may move to. Ids are given as
        events are inserted, and across chains they do not commit in that order, so on
        PostgreSQL this waits until every chain's writer at this moment has committed
        (every chain's lock shared, for two statements). SQLite has one writer: ids
        commit in order."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(_SHARE_CHAINS, {"count": self.chain_count(conn)})
            return int(conn.execute(_NEWEST_ID).scalar_one())

    @staticmethod
    def _held(conn: Connection) -> dict[int, tuple[int, str]]:
        """The chains this transaction holds: each one's last position and digest so far."""
        transaction = conn.get_transaction()
        kept = conn.info.get("chains")
        if kept is None or kept[0] is not transaction:
            kept = conn.info["chains"] = (transaction, {})
        held: dict[int, tuple[int, str]] = kept[1]
        return held

    def _append(self, conn: Connection, values: Mapping[str, Any], delivery: Mapping[str, Any] | None = None) -> None:
        """Insert one event at the end of its chain (its account's; no account: its
        address's, else the house's), holding that chain's lock and its address's. Within
        one chain, ids grow in commit order; across chains they do not."""
        count = self.chain_count(conn)
        address = self.vault.index(values["address"], conn) if values.get("address") else None
        number = (chain.of_account(values["account_id"], count) if values.get("account_id") is not None
                  else chain.of_address(address, count) if address else chain.of_house(count))
        held = self._held(conn)
        # A fact about an address (an opt-out) also holds the address's lock: a claim to
        # the address from any account waits for it (`facts.Known`'s marks per address).
        wanted = {number, chain.of_address(address, count)} if address and values["kind"] in FACT_KINDS else {number}
        if not wanted <= held.keys():
            self.lock(conn, wanted)
        # Sealed under the locks: a data key made here is one a rotation (which holds
        # every chain's lock) re-wraps, never one made with a master key it replaced.
        values = self.vault.seal_event(conn, values)  # the chain covers the ciphertexts
        position, previous = held[number]
        linked = chain.digest(previous, values, delivery)
        self._pending(conn).append({"address_index": None, **values, "chain": number, "position": position + 1,
                                    "digest": linked})
        held[number] = (position + 1, linked)

    @staticmethod
    def _pending(conn: Connection) -> list[dict[str, Any]]:
        """This transaction's appended events not yet sent to the database: they go in one
        statement (`_flush`), before anything else the transaction runs and before it
        commits — one round trip for a batch, where one per event was most of the time
        a chain's lock was held (`bench/log.py`)."""
        transaction = conn.get_transaction()
        kept = conn.info.get("pending")
        if kept is None or kept[0] is not transaction:
            kept = conn.info["pending"] = (transaction, [])
        pending: list[dict[str, Any]] = kept[1]
        return pending

    @staticmethod
    def _flush(conn: Connection, *_: Any) -> None:
        """Insert the transaction's pending events (the engine calls this before every
        statement and at commit, `Store.__init__`)."""
        kept = conn.info.get("pending")
        if kept is None or not kept[1] or kept[0] is not conn.get_transaction():
            return
        rows, kept[1][:] = list(kept[1]), []
        conn.execute(_INSERT_EVENT, rows)

    def record(self, event: Event, now: datetime, conn: Connection | None = None) -> None:
        """Append one event (a decision, a status change, a provider callback...).

        An event about a delivery is filed under the delivery's job, invoice and account.
        """
        with self.within(conn) as c:
            if event.delivery_id is not None and event.account_id is None:
                owner = c.execute(_DELIVERY_OWNER, {"delivery_id": event.delivery_id}).one()
                event = replace(event, job_id=owner.job_id, invoice_id=owner.invoice_id, account_id=owner.account_id)
            self._append(c, _row(event, now))

    def claim(self, claim: Claim, now: datetime, *, decision: Mapping[str, Any] | None = None,
              known: Known | None = None, conn: Connection | None = None) -> Delivery | None:
        """Claim a delivery; if its key was claimed before, return that one as it stands.

        `decision` (the decision's JSON) is recorded in the same transaction, so a claimed
        delivery always has the decision that made it. With `known`, the claim is refused
        (None) when an event newer than those facts concerns the invoice, the account or
        an address — a payment recorded before the claim stops the send. The log's write
        account's lock and the recipient's are held from before the check (`lock`).
        """
        index = claim.recipient_index or self.vault.index(claim.recipient)
        with self.locked(conn, accounts=[claim.account_id], indexes=[index]) as c:
            if decision is not None:
                self._append(c, _row(Event(Kind.DECISION, str(decision.get("action")), job_id=claim.job_id,
                                           invoice_id=claim.invoice_id, account_id=claim.account_id,
                                           detail=dict(decision)), now))
            if known is not None and changed_since(c, known):
                return None
            row = self.vault.seal_delivery(c, {
                **{k: v for k, v in vars(claim).items() if k != "message"}, "reasons": list(claim.reasons),
                "rules": list(claim.rules), "zones": list(claim.zones), "claimed_at": now})
            delivery_id = c.execute(self._claim, row).scalar()
            if delivery_id is None:
                existing = find_delivery(c, claim.delivery_key)
                assert existing is not None  # the conflict was on this key
                return existing
            self._append(c, _row(Event(Kind.DELIVERY, DeliveryStatus.CLAIMED, delivery_id=delivery_id,
                                       job_id=claim.job_id, invoice_id=claim.invoice_id, account_id=claim.account_id,
                                       detail={"message": dict(claim.message)} if claim.message else None), now),
                         delivery=row)
        return Delivery(int(delivery_id), claim.delivery_key, DeliveryStatus.CLAIMED, now, fresh=True)

    def sealed(self, claim: Claim) -> Claim:
        """The claim with its recipient sealed and indexed now, if the account's key is at
        hand (it is, after `known`): less work under the log's lock, where `claim` would
        do it otherwise."""
        if claim.recipient_index is not None:
            return claim
        sealed = self.vault.seal_ahead(("account", claim.account_id), "recipient", claim.recipient)
        if sealed is None:
            return claim
        return replace(claim, recipient=sealed, recipient_index=self.vault.index(claim.recipient))

    def reclaim(self, delivery_id: int, now: datetime, why: str, conn: Connection | None = None) -> int:
        """Claim a delivery again before sending it again (its first attempt has no outcome):
        a second `claimed` event, covering the delivery row like the first, so exports,
        caps and the compliance view count the second contact. Returns the attempt number."""
        with self.within(conn) as c:
            row = dict(c.execute(select(deliveries).where(deliveries.c.id == delivery_id)).mappings().one())
            self.lock(c, self.chains_of([row["account_id"]]))
            attempt = 1 + int(c.execute(select(func.count()).where(
                events.c.delivery_id == delivery_id, events.c.kind == Kind.DELIVERY,
                events.c.status == DeliveryStatus.CLAIMED)).scalar_one())
            self._append(c, _row(Event(Kind.DELIVERY, DeliveryStatus.CLAIMED, delivery_id=delivery_id,
                                       job_id=row["job_id"], invoice_id=row["invoice_id"],
                                       account_id=row["account_id"], detail={"attempt": attempt, "why": why}), now),
                         delivery=row)
        return attempt

    def suppress(self, account_id: str | None, address: str, channel: str, reason: str, now: datetime,
                 code: str | None = None, conn: Connection | None = None, by: str | None = None) -> None:
        """Stop contacting an address (invalid, opted out): read back by `facts_for`. With a
        `code` (a provider's error), it is an invalid address, which no opt-in undoes."""
        detail = {"address": address, "channel": channel, **({"by": by} if by else {})}
        self.record(Event(Kind.SUPPRESSION, SuppressionStatus.SUPPRESSED, account_id=account_id, error_code=code,
                          error_text=reason, detail=detail, address=address), now, conn)

    def opt_out(self, account_id: str | None, address: str, channel: str, reason: str, now: datetime,
                by: str) -> bool:
        """A person asked for no more messages to `address`; False if they already had.

        Checked and recorded under the address's lock (and the account's), so two STOP
        replies handled at once by two processes record one opt-out and earn one
        confirmation, and a claim to the address waits for it, then sees it."""
        with self.locked(accounts=[account_id], indexes=[self.vault.index(address)]) as conn:
            opted_out, _invalid = suppressions(conn, self.vault, address)
            if opted_out:
                return False
            self.suppress(account_id, address, channel, reason, now, conn=conn, by=by)
        return True

    def escalate(self, job_id: str, invoice_id: str, account_id: str, reasons: Iterable[str], now: datetime,
                 conn: Connection | None = None) -> bool:
        """Hand the invoice to a person; False if it already was (escalated once, notified once)."""
        with self.locked(conn, accounts=[account_id]) as c:
            if c.execute(_ESCALATED, {"invoice_id": invoice_id}).first() is not None:
                return False
            self.record(Event(Kind.INVOICE, InvoiceStatus.ESCALATED, job_id=job_id, invoice_id=invoice_id,
                              account_id=account_id, detail={"reasons": list(reasons)}), now, c)
        return True

    def unkept(self, sources: Iterable[TemplateVersion]) -> bool:
        """Whether any of these versions is not yet known kept (by this process)."""
        return any(source.version not in self._kept for source in sources)

    def keep_templates(self, sources: Iterable[TemplateVersion], now: datetime) -> None:
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

    def dead_letter(self, origin: str, reason: str, payload: str, now: datetime, job_id: str | None = None,
                    conn: Connection | None = None, account_id: str | None = None) -> None:
        """Keep a rejected or failed job with the reason: never silently dropped, whatever its
        bytes (a NUL or a lone surrogate, which no database stores, is kept escaped). Kept
        plain — it may name no account to seal under — and removed when its account is erased."""
        account_id = account_id or account_named(payload)
        with self.within(conn) as c:
            c.execute(insert(dead_letters).values(job_id=storable(job_id)[:200] if job_id else None,
                                                  account_id=storable(account_id)[:200] if account_id else None,
                                                  origin=storable(origin)[:100], reason=storable(reason),
                                                  payload=storable(payload), received_at=now))


_ACCOUNT_ID = re.compile(r'"account_id"\s*:\s*"((?:[^"\\]|\\.){1,200})"')


def account_named(payload: str) -> str | None:
    """The account a payload names (a job, or a queue message holding one), however broken
    the rest of it is: so that erasing the account finds its dead letters."""
    found = _ACCOUNT_ID.search(payload)
    if found is None:
        return None
    try:
        return str(json.loads(f'"{found.group(1)}"'))
    except ValueError:
        return found.group(1)


def storable(text: str) -> str:
    """Text any database keeps: NUL and unpaired surrogates written as escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\u0000")
