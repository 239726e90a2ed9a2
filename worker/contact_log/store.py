"""The contact log's only writer: every write goes through here, linked into one of the
log's hash chains (`chain.py`) under that chain's lock (`appending.py`: where an event
goes, which locks it holds, how a transaction's events are inserted).

Rows are never updated: a delivery is one row written when it is *claimed* (before the
provider is called), and everything that happens to it afterwards — sent, failed,
delivered, unknown, a provider callback — is a new event row. The unique delivery key
is what makes sending effectively-once on an at-least-once queue: a redelivered job
finds its delivery already claimed and looks at the latest event instead of sending
again.

A check-then-write takes its locks before it reads (`locked`), so what it read stays
true until it writes: a payment against a claim (one account, one chain), a second STOP
against the first, an opt-out by address against a claim to that address from another
account (the address's lock), an escalation against the one before.

Every write method takes an optional `conn`: given one, it writes inside that
transaction (the worker's group commit, `writer.py`); otherwise it commits on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, Self

from sqlalchemy import Engine, bindparam, func, insert, select
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from worker.contact_log.appending import Appending, flush
from worker.contact_log.facts import Known, changed_since, suppressions
from worker.contact_log.kinds import DeliveryStatus, Event, InvoiceStatus, Kind, SuppressionStatus
from worker.contact_log.queries import Delivery, find_delivery
from worker.db import migrations
from worker.db.prepared import Inserting
from worker.db.schema import dead_letters, deliveries, events, open_engine, template_versions
from worker.db.vault import Vault
from worker.errors import SchemaError

# Built once: statements built per call cost more in SQLAlchemy than the insert itself.
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


class Store(Appending):
    """The log's writes (mixed into `ContactLog`); safe to share between threads."""

    def __init__(self, engine: Engine, master_key: bytes | None = None) -> None:
        self.engine = engine
        self.vault = Vault(engine, master_key)  # personal values sealed as written, opened as read
        self._claim = Inserting(insert_or_nothing(engine.dialect.name, deliveries, "delivery_key"),
                                [column.key for column in deliveries.c if column.key != "id"])
        self._kept: set[str] = set()  # template versions known to be stored already
        self._count: int | None = None  # K, the log's chains: read once, fixed for the log's life
        if not sqlalchemy_event.contains(engine, "before_execute", flush):  # a transaction's appends, at once
            sqlalchemy_event.listen(engine, "before_execute", flush)
            sqlalchemy_event.listen(engine, "commit", flush)

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
            flush(c)  # events appended earlier in this transaction are news too (read on the cursor: `prepared`)
            if known is not None and changed_since(c, known):
                return None  # the decision was made on facts that no longer hold: not recorded
            if decision is not None:  # inserted with the `claimed` event, in one statement (`appending.flush`)
                self._append(c, _row(Event(Kind.DECISION, str(decision.get("action")), job_id=claim.job_id,
                                           invoice_id=claim.invoice_id, account_id=claim.account_id,
                                           detail=dict(decision)), now))
            row = self.vault.seal_delivery(c, {
                **{k: v for k, v in vars(claim).items() if k != "message"}, "reasons": list(claim.reasons),
                "rules": list(claim.rules), "zones": list(claim.zones), "claimed_at": now})
            delivery_id = self._claim.one(c, row)
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
