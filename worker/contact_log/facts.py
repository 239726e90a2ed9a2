"""From log rows to `schedules.Facts`: what `decide` needs to know about a debtor now.

This is where the log's words get their meaning for the policy: which latest status of
a delivery counts as which outcome of a contact (a Twilio `no-answer`, a `completed`
call), which events make an invoice paid, disputed or promised, which make an address
or a medium off limits. Reads only; `Known.mark` lets a claim notice anything newer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, union_all
from sqlalchemy.engine import Connection

from schedules.facts import NOTHING_KNOWN, Attempt, Facts, Payment
from worker.contact_log.kinds import (
    FACT_KINDS,
    AccountStatus,
    DeliveryStatus,
    ErasureStatus,
    InvoiceStatus,
    JobStatus,
    Kind,
    SuppressionStatus,
)
from worker.db.prepared import Prepared
from worker.db.schema import deliveries, events
from worker.db.vault import KEY_OF_ACCOUNT, Vault

FACTS_LOOKBACK = timedelta(days=40)  # longer than any cap's period
# What a delivery's latest status says about the attempt, for caps and escalation.
_OUTCOMES = {"failed": "failed", "undelivered": "failed", "canceled": "failed", "no-answer": "no-answer",
             "busy": "busy", "voicemail": "voicemail", "completed": "conversation", "in-progress": "conversation"}
_VOICE_PENDING = "no-answer"  # a call still ringing counts as unanswered until it says otherwise

_LATEST_EVENT = (select(func.max(events.c.id)).where(events.c.delivery_id == deliveries.c.id)
                 .correlate(deliveries).scalar_subquery())
_CLAIMS = (select(func.count())
           .where(events.c.delivery_id == deliveries.c.id, events.c.kind == Kind.DELIVERY,
                  events.c.status == DeliveryStatus.CLAIMED).correlate(deliveries).scalar_subquery())
_ATTEMPTS = Prepared(select(deliveries.c.invoice_id, deliveries.c.job_id, deliveries.c.channel, deliveries.c.stage,
                            deliveries.c.recipient, deliveries.c.claimed_at, events.c.status, _CLAIMS.label("claims"))
                     .join(events, events.c.id == _LATEST_EVENT)
                     .where(deliveries.c.account_id == bindparam("account_id"),
                            deliveries.c.claimed_at >= bindparam("since")))
_ABOUT = ((events.c.account_id == bindparam("account_id")) | (events.c.invoice_id == bindparam("invoice_id"))
          | events.c.address_index.in_(bindparam("addresses", expanding=True)))
_HAPPENINGS = Prepared(select(events.c.id, events.c.kind, events.c.status, events.c.invoice_id, events.c.account_id,
                              events.c.detail, events.c.occurred_at, events.c.error_code, events.c.address,
                              events.c.address_index, events.c.job_id)
                       .where(events.c.kind.in_(FACT_KINDS), _ABOUT).order_by(events.c.id), lists=["addresses"])
_CLAIMED = (events.c.kind == Kind.DELIVERY) & (events.c.status == DeliveryStatus.CLAIMED)
# The account's data key (the claim seals with it: read now, not under the log's lock),
# and the id of its newest claim: a claim made meanwhile for another of its jobs is news.
_ACCOUNT_KEY = Prepared(select(*KEY_OF_ACCOUNT, select(func.max(events.c.id)).where(
    events.c.account_id == bindparam("key_account"), _CLAIMED).scalar_subquery()))
# The same reads for many debtors at once (the forecast: three statements per batch of
# accounts, not three per step).
_ATTEMPTS_OF = (select(deliveries.c.account_id, deliveries.c.invoice_id, deliveries.c.job_id, deliveries.c.channel,
                       deliveries.c.stage, deliveries.c.recipient, deliveries.c.claimed_at, events.c.status,
                       _CLAIMS.label("claims"))
                .join(events, events.c.id == _LATEST_EVENT)
                .where(deliveries.c.account_id.in_(bindparam("accounts", expanding=True)),
                       deliveries.c.claimed_at >= bindparam("since")))
_HAPPENINGS_OF = (select(events.c.id, events.c.kind, events.c.status, events.c.invoice_id, events.c.account_id,
                         events.c.detail, events.c.occurred_at, events.c.error_code, events.c.address,
                         events.c.address_index, events.c.job_id)
                  .where(events.c.kind.in_(FACT_KINDS),
                         events.c.account_id.in_(bindparam("accounts", expanding=True))
                         | events.c.invoice_id.in_(bindparam("invoices", expanding=True))
                         | events.c.address_index.in_(bindparam("addresses", expanding=True)))
                  .order_by(events.c.id))
_BATCH = 300  # accounts per statement
_NEWER_COLUMNS = (events.c.id, events.c.account_id, events.c.invoice_id, events.c.address_index)
# Three lookups, each down its own index (an OR of them would scan every event after the
# oldest mark): the account's facts and claims, the invoice's facts, the addresses' facts.
_NEWER_FACTS = Prepared(union_all(
    select(*_NEWER_COLUMNS).where(events.c.account_id == bindparam("account_id"), events.c.id > bindparam("mark"),
                                  events.c.kind.in_(FACT_KINDS) | _CLAIMED),
    select(*_NEWER_COLUMNS).where(events.c.invoice_id == bindparam("invoice_id"), events.c.id > bindparam("mark"),
                                  events.c.kind.in_(FACT_KINDS)),
    select(*_NEWER_COLUMNS).where(events.c.address_index.in_(bindparam("addresses", expanding=True)),
                                  events.c.id > bindparam("address_mark"), events.c.kind.in_(FACT_KINDS))),
    lists=["addresses"])


@dataclass(frozen=True)
class Known:
    """Facts as read, with marks: a claim made on these facts is refused if anything
    newer changed them (paid, opted out...).

    A mark is the id of the newest fact (or claim: caps count contacts) read about the
    account and invoice, and of the newest fact about each address. Ids are not in
    commit order across the log's chains, but they are among the events of one account
    (its chain's lock is held from an event's insert to its commit) and among those of
    one address (every writer about an address holds that address's chain lock,
    `Store.lock`): so anything committed about them later has a higher id than their
    mark."""

    facts: Facts
    mark: int
    invoice_id: str
    account_id: str
    addresses: tuple[str, ...]  # the blind indexes of the job's addresses (`vault.py`)
    cancelled: bool = False  # the billing system cancelled this job (`DELETE /v1/jobs/{id}`)
    erased: bool = False  # the account's personal data was erased (`dunning records erase`)
    address_marks: Mapping[str, int] = field(default_factory=dict)  # blind index: the newest fact's id
    # Only `known` reads the marks a claim checks against; `known_many` (the forecast) reads facts.


def changed_since(conn: Connection, known: Known) -> bool:
    """Whether an event newer than `known`'s marks concerns its invoice, account or addresses."""
    marks = known.address_marks
    for row in _NEWER_FACTS.rows(conn, {
            "mark": known.mark, "account_id": known.account_id, "invoice_id": known.invoice_id,
            "addresses": list(known.addresses), "address_mark": min((marks.get(a, 0) for a in known.addresses),
                                                                     default=0)}):
        if (row.account_id == known.account_id or row.invoice_id == known.invoice_id) and row.id > known.mark:
            return True
        if row.address_index in known.addresses and row.id > marks.get(row.address_index, 0):
            return True
    return False


@dataclass(frozen=True)
class Ask:
    """Whose facts, for which job: `known`'s arguments, for `known_many`."""

    account_id: str
    invoice_id: str
    job_id: str
    addresses: tuple[str, ...] = ()


class FactReads:
    """The log's reads for `decide` (mixed into `ContactLog`)."""

    engine: Engine
    vault: Vault

    def facts_for(self, account_id: str, invoice_id: str, job_id: str, now: datetime,
                  addresses: Iterable[str] = ()) -> Facts:
        """What `decide` needs to know, from the log: attempts across all of the debtor's
        invoices (caps hold per person), suppressions of the account or of any of its
        `addresses` (an opt-out may name only the address), and the invoice's own events."""
        return self.known(account_id, invoice_id, job_id, now, addresses).facts

    def known(self, account_id: str, invoice_id: str, job_id: str, now: datetime,
              addresses: Iterable[str] = ()) -> Known:
        """`facts_for`, with the mark that `claim` checks against."""
        wanted = tuple(self.vault.indexes(addresses))  # Zhang@X and zhang@x are one person's mailbox
        with self.engine.connect() as conn:
            (key_row,) = _ACCOUNT_KEY.rows(conn, {"key_account": account_id})
            self.vault.remember(("account", account_id), key_row[0], key_row[1], conn)
            last_claim = int(key_row[2] or 0)
            attempts = _ATTEMPTS.rows(conn, {"account_id": account_id, "since": now - FACTS_LOOKBACK})
            happenings = _HAPPENINGS.rows(conn, {"account_id": account_id, "invoice_id": invoice_id,
                                                 "addresses": list(wanted)})
            known = self._interpret(conn, Ask(account_id, invoice_id, job_id, wanted), attempts, happenings)
        return replace(known, mark=max(known.mark, last_claim))

    def known_many(self, asks: Sequence[Ask], now: datetime) -> list[Known]:
        """`known` for many jobs at once, in order — the same facts, read in three
        statements per few hundred accounts instead of three per job (the forecast)."""
        marked = [replace(ask, addresses=tuple(self.vault.indexes(ask.addresses))) for ask in asks]
        found: list[Known] = []
        with self.engine.connect() as conn:
            start = 0
            while start < len(marked):
                accounts: set[str] = set()
                end = start
                while end < len(marked) and (marked[end].account_id in accounts or len(accounts) < _BATCH):
                    accounts.add(marked[end].account_id)
                    end += 1
                chunk = marked[start:end]
                self.vault.prepare(conn, [("account", account) for account in accounts], make=False)
                tried: dict[str, list[Any]] = {}
                for tried_row in conn.execute(_ATTEMPTS_OF, {"accounts": sorted(accounts),
                                                             "since": now - FACTS_LOOKBACK}):
                    tried.setdefault(tried_row.account_id, []).append(tried_row)
                by: dict[tuple[str, str], list[Any]] = {}
                for row in conn.execute(_HAPPENINGS_OF, {
                        "accounts": sorted(accounts), "invoices": sorted({a.invoice_id for a in chunk}),
                        "addresses": sorted({m for a in chunk for m in a.addresses})}):
                    for key in (("account", row.account_id), ("invoice", row.invoice_id),
                                ("address", row.address_index)):
                        by.setdefault(key, []).append(row)
                for ask in chunk:
                    rows = {row.id: row for key in (("account", ask.account_id), ("invoice", ask.invoice_id),
                                                    *(("address", m) for m in ask.addresses))
                            for row in by.get(key, ())}
                    found.append(self._interpret(conn, ask, tried.get(ask.account_id, []),
                                                 [rows[i] for i in sorted(rows)]))
                start = end
        return found

    def _interpret(self, conn: Connection, ask: Ask, attempt_rows: Iterable[Any],
                   happenings: Sequence[Any]) -> Known:
        """The rows' meaning for `decide`: the one place the log's words become facts."""
        account_id, invoice_id, job_id, wanted = ask.account_id, ask.invoice_id, ask.job_id, ask.addresses
        attempts: list[Attempt] = []
        failed_here: set[Any] = set()
        state: dict[str, Any] = {"paid": False, "written_off": False, "disputed": False, "promised_until": None,
                                 "ceased": False, "escalated": False, "paused": False}
        paused = {"invoice": False, "account": False}
        opted_out: set[str] = set()
        invalid: set[str] = set()
        media: set[Any] = set()
        payments: list[Payment] = []
        cancelled = erased = False
        for row in attempt_rows:
            if row.job_id == job_id and row.status == DeliveryStatus.FAILED:
                failed_here.add(row.channel)
            if row.job_id == job_id and _unfinished(row.status, row.channel):
                continue  # this job's own unfinished delivery, about to be (re)sent: not a past contact
            outcome = _OUTCOMES.get(row.status) or (_VOICE_PENDING if row.channel == "voice" else "delivered")
            attempt = Attempt(invoice_id=row.invoice_id, channel=row.channel, stage=row.stage, at=row.claimed_at,
                              outcome=outcome,  # type: ignore[arg-type]
                              address=self.vault.open("recipient", row.recipient, conn))
            attempts.extend([attempt] * max(1, int(row.claims or 1)))  # a resend is a contact too
        for event_row in happenings:  # in order: the last word wins
            if event_row.kind == Kind.SUPPRESSION:
                event_row = _Opened(self.vault.open_row(event_row._mapping, conn))
            detail = event_row.detail or {}
            if event_row.kind == Kind.INVOICE and event_row.invoice_id == invoice_id:
                if event_row.status == InvoiceStatus.PAYMENT:
                    payments.append(Payment(at=event_row.occurred_at, amount=Decimal(str(detail["amount"]))))
                _apply_invoice_event(state, event_row.status, detail)
                if event_row.status in (InvoiceStatus.PAUSED, InvoiceStatus.RESUMED):
                    paused["invoice"] = event_row.status == InvoiceStatus.PAUSED
            elif event_row.kind == Kind.ACCOUNT:
                if event_row.status in (AccountStatus.PAUSED, AccountStatus.RESUMED):
                    paused["account"] = event_row.status == AccountStatus.PAUSED
                else:
                    state["ceased"] = event_row.status == AccountStatus.CEASED
            elif event_row.kind == Kind.SUPPRESSION:
                apply_suppression(event_row, detail, opted_out, invalid, media)
            elif event_row.kind == Kind.JOB and event_row.job_id == job_id:
                cancelled = cancelled or event_row.status == JobStatus.CANCELLED
            elif event_row.kind == Kind.ERASURE:
                erased = erased or event_row.status == ErasureStatus.ERASED
        state["paused"] = paused["invoice"] or paused["account"]
        if not (any(state.values()) or attempts or payments or opted_out or invalid or media or failed_here):
            facts = NOTHING_KNOWN  # most debtors in a forecast: one shared value, not ~40 µs of pydantic each
        else:
            facts = Facts(**state, suppressed_addresses=frozenset(opted_out), invalid_addresses=frozenset(invalid),
                          suppressed_channels=frozenset(media), failed_channels=frozenset(failed_here),
                          attempts=tuple(attempts), payments=tuple(payments))
        mark, address_marks = _marks(ask, happenings)
        return Known(facts, mark, invoice_id, account_id, wanted, cancelled, erased, address_marks)

    def suppressed(self, address: str) -> bool:
        """Whether nothing may be sent to `address` now (opted out, or proven invalid)."""
        with self.engine.connect() as conn:
            opted_out, invalid = suppressions(conn, self.vault, address)
        return bool(opted_out | invalid)


class _Opened:
    """A row opened by the vault, read by attribute like the row it came from."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)


def _marks(ask: Ask, happenings: Iterable[Any]) -> tuple[int, dict[str, int]]:
    """`Known`'s marks: the newest fact read about the account or invoice, and about each address."""
    mark, address_marks = 0, dict.fromkeys(ask.addresses, 0)
    for row in happenings:
        if row.account_id == ask.account_id or row.invoice_id == ask.invoice_id:
            mark = max(mark, row.id)
        if row.address_index in address_marks:
            address_marks[row.address_index] = max(address_marks[row.address_index], row.id)
    return mark, address_marks


def _unfinished(status: str, channel: str) -> bool:
    """A delivery of the job being decided that has no outcome yet: claimed, to be retried,
    or an email whose data got no reply (resent once: `worker.pipeline`)."""
    return status in (DeliveryStatus.CLAIMED, DeliveryStatus.RETRY) or (
        status == DeliveryStatus.UNKNOWN and channel == "email")


def suppressions(conn: Connection, vault: Vault, address: str) -> tuple[set[str], set[str]]:
    """(opted out, proven invalid): the address, in each set it is in now."""
    opted_out: set[str] = set()
    invalid: set[str] = set()
    mark = vault.index(address, conn)
    for found in conn.execute(select(events.c.status, events.c.detail, events.c.error_code, events.c.address)
                              .where(events.c.kind == Kind.SUPPRESSION, events.c.address_index == mark)
                              .order_by(events.c.id)):
        row: Any = _Opened(vault.open_row(found._mapping, conn))
        apply_suppression(row, row.detail or {}, opted_out, invalid, set())
    return opted_out, invalid


def apply_suppression(row: Any, detail: Mapping[str, Any], opted_out: set[str], invalid: set[str],
                      media: set[Any]) -> None:
    """An opt-out (or opt-in) of an address or a medium; a provider-proven invalid address
    (it carries the provider's error code) stays suppressed whatever the person texts."""
    if row.address or detail.get("address"):
        address = str(row.address or detail["address"]).casefold()
        if row.status == SuppressionStatus.SUPPRESSED:
            (invalid if row.error_code else opted_out).add(address)
        else:
            opted_out.discard(address)
    elif detail.get("channel"):
        if row.status == SuppressionStatus.SUPPRESSED:
            media.add(detail["channel"])
        else:
            media.discard(detail["channel"])


_INVOICE_STATE = {InvoiceStatus.PAID: ("paid", True), InvoiceStatus.WRITTEN_OFF: ("written_off", True),
                  InvoiceStatus.DISPUTED: ("disputed", True), InvoiceStatus.RESOLVED: ("disputed", False),
                  InvoiceStatus.ESCALATED: ("escalated", True)}


def _apply_invoice_event(state: dict[str, Any], status: str, detail: Mapping[str, Any]) -> None:
    if status == InvoiceStatus.PROMISED:
        state["promised_until"] = date.fromisoformat(str(detail["until"]))
    elif status in _INVOICE_STATE:
        name, value = _INVOICE_STATE[InvoiceStatus(status)]
        state[name] = value
