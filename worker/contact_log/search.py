"""Finding a person's record for the console: one text — an account id, an invoice id,
an email address or a phone number in any common format — matched exactly on its
normalised value, answered as the invoices (and accounts) it leads to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

import phonenumbers
from sqlalchemy import Engine, func, or_, select

from worker.contact_log.kinds import Kind
from worker.contact_log.queries import invoice_state
from worker.contact_log.schema import deliveries, events
from worker.contact_log.vault import Vault

_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")


def normalised(text: str) -> str:
    """An address as the log keeps it: emails without case, phone numbers E.164
    (`+86 138-0013-8000`, `0086 13800138000` → `+8613800138000`)."""
    text = text.strip()
    if "@" in text:
        return text.casefold()
    compact = _PHONE_PUNCTUATION.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if compact.startswith("+"):
        try:
            return phonenumbers.format_number(phonenumbers.parse(compact, None), phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            return compact
    return text


@dataclass(frozen=True)
class Found:
    account_id: str | None
    invoice_id: str | None
    events: int
    last: datetime
    state: str | None  # an invoice's: open, paid, written-off, disputed, promised, escalated


class Search:
    """The console's search (mixed into `ContactLog`)."""

    engine: Engine
    vault: Vault

    def search(self, text: str, today: date, limit: int = 100) -> list[Found]:
        wanted, address = text.strip(), normalised(text)
        if not wanted:
            return []
        marks = sorted(set(self.vault.indexes({address, wanted})))  # addresses are sealed: found by blind index
        with self.engine.connect() as conn:
            pairs = {(row.account_id, row.invoice_id) for row in conn.execute(
                select(events.c.account_id, events.c.invoice_id).distinct().where(
                    or_(events.c.account_id == wanted, events.c.invoice_id == wanted,
                        events.c.address_index.in_(marks)))
                .limit(limit))}
            pairs |= {(row.account_id, row.invoice_id) for row in conn.execute(
                select(deliveries.c.account_id, deliveries.c.invoice_id).distinct()
                .where(deliveries.c.recipient_index.in_(marks)).limit(limit))}
            # An invoice's events may name its account or not (billing's news may come before
            # any job): one row per invoice, with its account when any event names it.
            # An event about an address alone (an opt-out from an unknown number) names no
            # account or invoice to list.
            known = {invoice for account, invoice in pairs if account is not None and invoice is not None}
            pairs = {(account, invoice) for account, invoice in pairs
                     if (account is not None or invoice not in known) and (account, invoice) != (None, None)}
            found = []
            for account, invoice in sorted(pairs, key=lambda p: (p[0] or "", p[1] or "")):
                about = events.c.invoice_id == invoice if invoice is not None else events.c.account_id == account
                count, last = conn.execute(select(func.count(), func.max(events.c.occurred_at)).where(about)).one()
                state = invoice_state((dict(r._mapping) for r in conn.execute(
                    select(events.c.kind, events.c.status, events.c.detail)
                    .where(events.c.invoice_id == invoice, events.c.kind == Kind.INVOICE).order_by(events.c.id))),
                    today) if invoice is not None else None
                found.append(Found(account, invoice, int(count), last, state))
        return found[:limit]
