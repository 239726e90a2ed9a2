"""What the log knows for records management (issue 14): legal holds, the activity that
runs a debt's retention clock, the addresses an account's data names, erasures — and
the erasure itself, which destroys keys and clears traces in one transaction with the
chained `erasure` event that says so.

How long is long enough (the profiles' rules, the house default) is decided beside it,
in `retention.py` and `erasure.py`; this book answers from the rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select

from worker.contact_log import parties
from worker.contact_log.kinds import AccountStatus, ErasureStatus, Event, HoldStatus, Kind
from worker.contact_log.store import Store
from worker.db.schema import dead_letters, deliveries, events, idempotency, jobs

# Collection activity: what restarts a debt's retention clock. Not a hold, an erasure
# request, a look at the record, an opt-out or a cease: those are about the record or
# the person's wishes, not collecting.
ACTIVITY = (Kind.DECISION, Kind.DELIVERY, Kind.CALLBACK, Kind.INVOICE, Kind.ESCALATION, Kind.INBOUND, Kind.CADENCE,
            Kind.JOB)


@dataclass(frozen=True)
class Hold:
    target: str  # "account" or "invoice"
    id: str
    reason: str
    by: str
    at: datetime


@dataclass(frozen=True)
class Debt:
    """One invoice of an account, for its retention clock: the last collection activity
    on it and the profiles its jobs named."""

    invoice_id: str | None  # None: the account's own events (an opt-out, a cease)
    last_activity: datetime
    profiles: frozenset[str]


class RecordBook:
    """Holds, retention clocks and erasure over the log's store; holds and erasures go into the chain through `log`."""

    def __init__(self, log: Store) -> None:
        self.log = log
        self.engine = log.engine
        self.vault = log.vault

    # -- holds -----------------------------------------------------------------------

    def place_hold(self, target: str, target_id: str, reason: str, now: datetime, *, by: str) -> bool:
        """Put an account or invoice on legal hold; False if it already was."""
        return self._hold(target, target_id, HoldStatus.PLACED, reason, now, by)

    def release_hold(self, target: str, target_id: str, reason: str, now: datetime, *, by: str) -> bool:
        """Release a hold; False if there was none."""
        return self._hold(target, target_id, HoldStatus.RELEASED, reason, now, by)

    def _hold(self, target: str, target_id: str, status: HoldStatus, reason: str, now: datetime, by: str) -> bool:
        if target not in ("account", "invoice"):
            raise ValueError(f"a hold is on an account or an invoice, not {target!r}")
        with self.engine.connect() as conn:  # whose chain its holds are in: the account's
            account = target_id if target == "account" else conn.execute(
                select(jobs.c.account_id).where(jobs.c.invoice_id == target_id).limit(1)).scalar()
        with self.log.locked(accounts=[account]) as conn:
            held = {(h.target, h.id) for h in self.holds(conn=conn)}
            if ((target, target_id) in held) == (status == HoldStatus.PLACED):
                return False
            self.log.record(Event(Kind.HOLD, status, account_id=account,
                              invoice_id=target_id if target == "invoice" else None,
                              detail={"target": target, "reason": reason, "by": by}), now, conn)
        return True

    def holds(self, account_id: str | None = None, conn: Any = None) -> list[Hold]:
        """Holds in force (of one account and its invoices, or all), oldest first."""
        if conn is None:
            with self.engine.connect() as own:
                return self.holds(account_id, own)
        query = select(events.c.status, events.c.detail, events.c.account_id, events.c.invoice_id,
                       events.c.occurred_at).where(events.c.kind == Kind.HOLD).order_by(events.c.id)
        if account_id is not None:
            query = query.where(events.c.account_id == account_id)
        current: dict[tuple[str, str], Hold] = {}
        for row in conn.execute(query):
            detail = row.detail or {}
            target = str(detail.get("target"))
            key = (target, str(row.invoice_id if target == "invoice" else row.account_id))
            if row.status == HoldStatus.PLACED:
                current[key] = Hold(key[0], key[1], str(detail.get("reason", "")), str(detail.get("by", "")),
                                    row.occurred_at)
            else:
                current.pop(key, None)
        return list(current.values())

    def erasure_requests(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest erasure requests, refused or done, newest first."""
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(
                select(events.c.id, events.c.account_id, events.c.status, events.c.detail, events.c.occurred_at)
                .where(events.c.kind == Kind.ERASURE).order_by(events.c.id.desc()).limit(limit))]

    # -- retention -------------------------------------------------------------------

    def debts(self, account_id: str) -> list[Debt]:
        """The account's debts with their last collection activity and profiles; the
        account's own events (no invoice) as one more entry."""
        with self.engine.connect() as conn:
            last = {row.invoice_id: row.last for row in conn.execute(
                select(events.c.invoice_id, func.max(events.c.occurred_at).label("last"))
                .where(events.c.account_id == account_id, events.c.kind.in_(ACTIVITY))
                .group_by(events.c.invoice_id))}
            profiles: dict[str | None, set[str]] = {}
            for row in conn.execute(select(jobs.c.invoice_id, jobs.c.payload, jobs.c.received_at)
                                    .where(jobs.c.account_id == account_id)):
                last[row.invoice_id] = max(filter(None, (last.get(row.invoice_id), row.received_at)))
                profiles.setdefault(row.invoice_id, set()).add(_profile_of(self.vault.open("payload", row.payload)))
        every = set().union(*profiles.values()) if profiles else set()
        return [Debt(invoice, at, frozenset(profiles.get(invoice, every) if invoice else every))
                for invoice, at in sorted(last.items(), key=lambda item: item[1])]

    def has_account(self, account_id: str) -> bool:
        """Whether the log names this account (a job or an event): one indexed look each."""
        with self.engine.connect() as conn:
            return (conn.execute(select(jobs.c.job_id).where(jobs.c.account_id == account_id).limit(1)).first()
                    is not None or conn.execute(select(events.c.id).where(events.c.account_id == account_id)
                                                .limit(1)).first() is not None)

    def accounts(self) -> list[str]:
        """Every account the log names, for `purge`."""
        with self.engine.connect() as conn:
            named = set(conn.execute(select(jobs.c.account_id).distinct()).scalars())
            named |= set(conn.execute(select(events.c.account_id).distinct()
                                      .where(events.c.account_id.is_not(None))).scalars())
        return sorted(named)

    # -- erasure ---------------------------------------------------------------------

    def erased_at(self, account_id: str, conn: Any = None) -> datetime | None:
        """When the account was erased (its last erasure), or None."""
        query = (select(func.max(events.c.occurred_at)).where(
            events.c.account_id == account_id, events.c.kind == Kind.ERASURE, events.c.status == ErasureStatus.ERASED))
        if conn is not None:
            found: datetime | None = conn.execute(query).scalar()
            return found
        with self.engine.connect() as own:
            return own.execute(query).scalar()

    def addresses_of(self, account_id: str) -> set[str]:
        """Every address the account's records name (opened): what its erasure must reach."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for value in conn.execute(select(deliveries.c.recipient).where(deliveries.c.account_id == account_id)
                                      ).scalars():
                found.add(self.vault.open("recipient", value, conn))
            for value in conn.execute(select(events.c.address).where(events.c.account_id == account_id,
                                                                     events.c.address.is_not(None))).scalars():
                found.add(self.vault.open("address", value, conn))
            for payload in conn.execute(select(jobs.c.payload).where(jobs.c.account_id == account_id)).scalars():
                found |= _addresses_in(self.vault.open("payload", payload, conn))
        return {address for address in found if address and not address.startswith("[")}

    def about_address(self, address: str) -> tuple[list[str], list[dict[str, Any]]]:
        """Who an address leads to: the accounts whose records name it (by blind index) —
        in a job's debtor, a delivery, an event —, and the events about it that name no
        account (an opt-out, a text), opened."""
        mark = self.vault.index(address)
        with self.engine.connect() as conn:
            accounts = set(parties.accounts_named(conn, self.vault, address,
                                                  (parties.Named.EMAIL, parties.Named.PHONE)))
            accounts |= set(conn.execute(select(deliveries.c.account_id).distinct()
                                        .where(deliveries.c.recipient_index == mark)).scalars())
            accounts |= set(conn.execute(select(events.c.account_id).distinct().where(
                events.c.address_index == mark, events.c.account_id.is_not(None))).scalars())
            loose = [self.vault.open_row(row._mapping, conn) for row in conn.execute(
                select(events).where(events.c.address_index == mark, events.c.account_id.is_(None),
                                     events.c.kind != Kind.ACCESS).order_by(events.c.id))]
        return sorted(accounts), loose

    def refuse_erasure(self, account_id: str, reason: str, why: str, until: str | None, rule: str | None,
                       now: datetime, *, by: str) -> None:
        """Record a refused erasure request — and the stop it also asks for (a cease)."""
        with self.log.locked(accounts=[account_id]) as conn:
            self.log.record(Event(Kind.ERASURE, ErasureStatus.REFUSED, account_id=account_id,
                              detail={"reason": reason, "by": by, "why": why, "until": until, "rule": rule}), now, conn)
            self.log.record(Event(Kind.ACCOUNT, AccountStatus.CEASED, account_id=account_id,
                              detail={"by": by, "why": "asked to be erased: a request to erase is a request to stop"}),
                        now, conn)

    def erase(self, account_id: str, reason: str, now: datetime, *, by: str, rule: str | None = None) -> dict[str, int]:
        """Destroy the account's keys (and its addresses' own), clear its blind indexes,
        its dead letters and the API's remembered answers that name it, blank its jobs'
        JSON, and append the `erasure` event saying so — one transaction. What it removed."""
        addresses = self.addresses_of(account_id)
        with self.log.locked(accounts=[account_id], indexes=self.vault.indexes(addresses)) as conn:
            job_ids = list(conn.execute(select(jobs.c.job_id).where(jobs.c.account_id == account_id)).scalars())
            letters = int(conn.execute(select(func.count()).select_from(dead_letters)
                                       .where(dead_letters.c.account_id == account_id)).scalar_one())
            keys = self.vault.destroy(conn, account_id, addresses)
            remembered = 0
            for needle in [account_id, *job_ids, *addresses]:  # as written, and as JSON escapes it
                remembered += conn.execute(delete(idempotency).where(or_(
                    idempotency.c.response.contains(needle, autoescape=True),
                    idempotency.c.response.contains(json.dumps(needle)[1:-1], autoescape=True)))).rowcount
            removed = {"keys": len(keys), "addresses": len(addresses), "jobs": len(job_ids), "dead_letters": letters,
                       "idempotency": remembered}
            self.log.record(Event(Kind.ERASURE, ErasureStatus.ERASED, account_id=account_id,
                              detail={"reason": reason, "by": by, "rule": rule, **removed}), now, conn)
        return removed


def _profile_of(payload: str) -> str:
    try:
        return str(json.loads(payload).get("profile") or "default")
    except (ValueError, AttributeError):
        return "default"


def _addresses_in(payload: str) -> set[str]:
    try:
        debtor = json.loads(payload).get("debtor") or {}
    except (ValueError, AttributeError):
        return set()
    return {str(debtor[k]) for k in ("email", "phone") if debtor.get(k)}

