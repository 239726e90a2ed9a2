"""Finding a person's record for the console: one text — an account id (without regard
to case), an invoice id, an email address or a phone number in any common format, the
debtor's name or company — matched exactly on its normalised value, answered as the
invoices (and accounts) it leads to. Addresses, names and companies are sealed: they are
found by blind index (`parties`), wherever the log holds them — a job's debtor, a
delivery, an event (an opt-out, a reply)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, Engine, func, or_, select

from worker.contact_log import parties
from worker.contact_log.kinds import Kind
from worker.contact_log.parties import normalised
from worker.contact_log.queries import invoice_state
from worker.db.schema import deliveries, events, jobs
from worker.db.vault import Vault

__all__ = ["Found", "Search", "normalised"]


@dataclass(frozen=True)
class Found:
    account_id: str | None
    invoice_id: str | None
    events: int
    last: datetime | None  # None: jobs received, nothing happened yet
    state: str | None  # an invoice's: open, paid, written-off, disputed, promised, escalated
    matched: tuple[str, ...] = ()  # what the text matched in the jobs: email, phone, name, company, account
    address: str | None = None  # an address no job or account names (an opt-out from anyone)


class Search:
    """The console's search (mixed into `ContactLog`)."""

    engine: Engine
    vault: Vault

    def search(self, text: str, today: date, limit: int = 100) -> list[Found]:
        wanted, address = text.strip(), normalised(text)
        if not wanted:
            return []
        with self.engine.connect() as conn:
            named = parties.accounts_named(conn, self.vault, wanted)
            marks = sorted(set(self.vault.indexes({address, wanted}, conn)))
            pairs = {(row.account_id, row.invoice_id) for row in conn.execute(
                select(events.c.account_id, events.c.invoice_id).distinct().where(
                    or_(events.c.account_id == wanted, events.c.invoice_id == wanted,
                        events.c.address_index.in_(marks)))
                .limit(limit))}
            pairs |= {(row.account_id, row.invoice_id) for row in conn.execute(
                select(deliveries.c.account_id, deliveries.c.invoice_id).distinct()
                .where(deliveries.c.recipient_index.in_(marks)).limit(limit))}
            pairs |= {(row.account_id, row.invoice_id) for row in conn.execute(
                select(jobs.c.account_id, jobs.c.invoice_id).distinct()
                .where(or_(jobs.c.invoice_id == wanted, jobs.c.account_id.in_(sorted(named)))).limit(limit))}
            # An invoice's events may name its account or not (billing's news may come before
            # any job): one row per invoice, with its account when any event names it.
            known = {invoice for account, invoice in pairs if account is not None and invoice is not None}
            loose = (None, None) in pairs
            pairs = {(account, invoice) for account, invoice in pairs
                     if (account is not None or invoice not in known) and (account, invoice) != (None, None)}
            found = [self._found(conn, account, invoice, today, tuple(sorted(named.get(account or "", ()))))
                     for account, invoice in sorted(pairs, key=lambda p: (p[0] or "", p[1] or ""))]
            if loose and not found:  # an address only an opt-out (or a text) names: say it is held
                count, last = conn.execute(select(func.count(), func.max(events.c.occurred_at)).where(
                    events.c.address_index.in_(marks), events.c.account_id.is_(None),
                    events.c.kind != Kind.ACCESS)).one()
                if count:
                    found.append(Found(None, None, int(count), last, None, address=address))
        return found[:limit]

    def recent_accounts(self, limit: int = 20) -> list[Found]:
        """The accounts with the latest activity, newest first: what an empty search shows."""
        with self.engine.connect() as conn:
            seen: dict[str, datetime] = {}
            for row in conn.execute(select(events.c.account_id, events.c.occurred_at).where(
                    events.c.account_id.is_not(None), events.c.kind != Kind.ACCESS)
                    .order_by(events.c.id.desc()).limit(50 * limit)):
                if row.account_id not in seen:
                    seen[row.account_id] = row.occurred_at
                if len(seen) >= limit:
                    break
            return [Found(account, None, int(conn.execute(select(func.count()).where(
                events.c.account_id == account)).scalar_one()), last, None) for account, last in seen.items()]

    def _found(self, conn: Connection, account: str | None, invoice: str | None, today: date,
               matched: tuple[str, ...]) -> Found:
        about = events.c.invoice_id == invoice if invoice is not None else events.c.account_id == account
        count, last = conn.execute(select(func.count(), func.max(events.c.occurred_at)).where(about)).one()
        state = invoice_state((dict(r._mapping) for r in conn.execute(
            select(events.c.kind, events.c.status, events.c.detail)
            .where(events.c.invoice_id == invoice, events.c.kind == Kind.INVOICE).order_by(events.c.id))),
            today) if invoice is not None else None
        return Found(account, invoice, int(count), last, state, matched)
