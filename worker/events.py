"""What billing and people tell us: paid, written off, disputed, promised, opted out, ceased.

Each event is one row in the contact log (who said it, what, when) and takes effect
at once: an invoice's pending reminders in the agenda are cancelled (paid, written
off), parked (disputed, until resolved) or held (promised, until the day after the
promise). A reminder already in the queue re-reads the log before it claims its
delivery, and the claim is refused if one of these events came in meanwhile
(`ContactLog.claim`), so nothing is sent after a payment recorded before the send
started.

The functions take `now`; the CLI and the Python API (`worker.api`) read the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import email_validator
import phonenumbers

from schedules.spec import CHANNELS
from worker.contact_log import ContactLog
from worker.contact_log.kinds import (
    AccountStatus,
    CaseOutcome,
    CaseStatus,
    Event,
    InvoiceStatus,
    Kind,
    SuppressionStatus,
)
from worker.queue.agenda import Agenda

EARLIEST_OFFSET = timedelta(hours=14)  # UTC+14: where a calendar day begins first


class EventError(ValueError):
    """An event that cannot be recorded as given: which field, what was expected."""


class UnknownInvoice(EventError):
    """An event about an invoice the log has never been sent a job for: most likely a typo
    in the billing system, which must not look like success (HTTP 404, the CLI exits 1)."""

    def __init__(self, invoice_id: str) -> None:
        super().__init__(f"invoice {invoice_id}: the contact log has no job for this invoice; its events are "
                         "recorded once its jobs are sent (POST /v1/jobs, POST /v1/invoices, dunning enqueue or "
                         "dunning register)")
        self.invoice_id = invoice_id


_SAID = {"cancelled": "pending reminder(s) cancelled", "paused": "pending reminder(s) paused",
         "resumed": "reminder(s) resumed", "moved": "pending reminder(s) moved after the promise"}


@dataclass(frozen=True)
class Applied:
    """What an event did, for the person (or the billing system) who sent it: a sentence,
    and what it changed — pending steps by id (`cancelled`, `paused`, `resumed`, `moved`),
    addresses or media suppressed."""

    summary: str
    changes: dict[str, list[str]] = field(default_factory=dict)
    changed: bool = True  # False when it was so already (a second STOP)

    @property
    def agenda(self) -> str:
        """What it did to the agenda, in words ("2 pending reminder(s) cancelled")."""
        return "; ".join(f"{len(ids)} {_SAID[what]}" for what, ids in self.changes.items() if what in _SAID)


class Events:
    def __init__(self, log: ContactLog, agenda: Agenda | None) -> None:
        self.log, self.agenda = log, agenda

    def paid(self, invoice_id: str, now: datetime, *, by: str, amount: str | Decimal | None = None) -> Applied:
        """Paid in full, or (with `amount`) in part: the next reminder states what remains."""
        invoice_id = _required("invoice", invoice_id)
        if amount is None:
            self._record(Kind.INVOICE, InvoiceStatus.PAID, now, by, invoice_id=invoice_id)
            cancelled = self.agenda.cancel_invoice(invoice_id) if self.agenda else []
            return Applied(f"{invoice_id}: paid; no reminder will be sent for it", {"cancelled": cancelled})
        value = _amount(amount)
        self._record(Kind.INVOICE, InvoiceStatus.PAYMENT, now, by, invoice_id=invoice_id, detail={"amount": str(value)})
        return Applied(f"{invoice_id}: payment of {value} recorded; the next reminder states the balance")

    def write_off(self, invoice_id: str, now: datetime, *, by: str, note: str | None = None) -> Applied:
        """The creditor gave up on the invoice: collection ends, and its open escalation closes."""
        invoice_id = _required("invoice", invoice_id)
        self._record(Kind.INVOICE, InvoiceStatus.WRITTEN_OFF, now, by, invoice_id=invoice_id,
                     detail={"note": note} if note else None)
        cancelled = self.agenda.cancel_invoice(invoice_id) if self.agenda else []
        return Applied(f"{invoice_id}: written off; no reminder will be sent for it", {"cancelled": cancelled})

    def dispute(self, invoice_id: str, now: datetime, *, by: str, resolved: bool = False,
                note: str | None = None) -> Applied:
        """A dispute stops reminders until it is resolved; resolving it resumes them."""
        invoice_id = _required("invoice", invoice_id)
        detail = {"note": note} if note else None
        if resolved:
            self._record(Kind.INVOICE, InvoiceStatus.RESOLVED, now, by, invoice_id=invoice_id, detail=detail)
            resumed = self.agenda.unpark_invoice(invoice_id, now) if self.agenda else []
            return Applied(f"{invoice_id}: dispute resolved; reminders resume", {"resumed": resumed})
        self._record(Kind.INVOICE, InvoiceStatus.DISPUTED, now, by, invoice_id=invoice_id, detail=detail)
        parked = self.agenda.park_invoice(invoice_id) if self.agenda else []
        return Applied(f"{invoice_id}: disputed; no reminder until the dispute is resolved", {"paused": parked})

    def pause(self, target: str, now: datetime, *, by: str, reason: str, resume: bool = False) -> Applied:
        """An operator's hold on an invoice or a whole account (`target`: an invoice id, or
        `account:ID`): like a dispute, nothing is sent and the pending steps are parked
        until it is resumed; who and why are recorded."""
        reason = " ".join(reason.split())[:500]
        if not resume and not reason:
            raise EventError("reason: why the reminders are paused (kept in the log) expected")
        kind, name = ("account", target.removeprefix("account:")) if target.startswith("account:") else \
            ("invoice", target)
        name = _required(kind, name)
        invoices = ([j["invoice_id"] for j in self.log.jobs_of(account=name)] if kind == "account" else [name])
        detail = {"reason": reason} if reason else None
        if kind == "account":
            self._record(Kind.ACCOUNT, AccountStatus.RESUMED if resume else AccountStatus.PAUSED, now, by,
                         account_id=name, detail=detail)
        else:
            self._record(Kind.INVOICE, InvoiceStatus.RESUMED if resume else InvoiceStatus.PAUSED, now, by,
                         invoice_id=name, detail=detail)
        moved: list[str] = []
        for invoice in dict.fromkeys(invoices):
            if self.agenda is not None:
                moved += self.agenda.unpark_invoice(invoice, now) if resume else self.agenda.park_invoice(invoice)
        if resume:
            return Applied(f"{kind} {name}: reminders resume", {"resumed": moved})
        return Applied(f"{kind} {name}: paused; nothing is sent until it is resumed", {"paused": moved})

    def assign(self, invoice_id: str, now: datetime, *, by: str) -> Applied:
        """An operator takes an escalated case."""
        invoice_id = _required("invoice", invoice_id)
        self._record(Kind.ESCALATION, CaseStatus.ASSIGNED, now, by, invoice_id=invoice_id)
        return Applied(f"{invoice_id}: the case is {by}'s")

    def close_case(self, invoice_id: str, outcome: str, now: datetime, *, by: str, note: str = "",
                   until: date | None = None) -> Applied:
        """Close an escalated case with its outcome and a note. The outcome is also what
        billing would say: promised (a promise event, with its date), paid, disputed,
        written off — recorded as those events are, so reports and webhooks see them."""
        invoice_id = _required("invoice", invoice_id)
        try:
            chosen = CaseOutcome(outcome)
        except ValueError:
            raise EventError(f"outcome: {outcome!r}; one of {', '.join(CaseOutcome)} expected") from None
        if chosen == CaseOutcome.PROMISED and until is None:
            raise EventError("until: the date the debtor promised to pay (YYYY-MM-DD) expected")
        note = " ".join(note.split())[:2000]
        effect = None
        if chosen == CaseOutcome.PROMISED:
            assert until is not None
            effect = self.promise(invoice_id, until, now, by=by)
        elif chosen == CaseOutcome.PAID:
            effect = self.paid(invoice_id, now, by=by)
        elif chosen == CaseOutcome.DISPUTED:
            effect = self.dispute(invoice_id, now, by=by, note=note or None)
        elif chosen == CaseOutcome.WRITTEN_OFF:
            effect = self.write_off(invoice_id, now, by=by, note=note or None)
        detail = {"outcome": chosen.value, "note": note, **({"until": until.isoformat()} if until else {})}
        self._record(Kind.ESCALATION, CaseStatus.CLOSED, now, by, invoice_id=invoice_id, detail=detail)
        return Applied(f"{invoice_id}: case closed ({chosen.value})" + (f"; {effect.summary}" if effect else ""),
                       effect.changes if effect else {})

    def promise(self, invoice_id: str, until: date, now: datetime, *, by: str) -> Applied:
        """A promise to pay by `until` pauses reminders until the day after."""
        invoice_id = _required("invoice", invoice_id)
        if not isinstance(until, date):
            raise EventError("until: a date (YYYY-MM-DD) expected")
        if until < now.astimezone(UTC).date() - timedelta(days=1):
            raise EventError(f"until: {until} is in the past; a promise is to pay on a later date")
        self._record(Kind.INVOICE, InvoiceStatus.PROMISED, now, by, invoice_id=invoice_id,
                     detail={"until": until.isoformat()})
        resume = datetime.combine(until + timedelta(days=1), time.min, UTC) - EARLIEST_OFFSET
        held = self.agenda.hold_invoice(invoice_id, resume) if self.agenda and resume > now else []
        return Applied(f"{invoice_id}: promised to pay by {until}; reminders pause until then", {"moved": held})

    def optout(self, address: str, now: datetime, *, by: str, account_id: str | None = None,
               reason: str = "asked not to be contacted") -> Applied:
        """Stop every message to an address (an email or an E.164 phone number), whoever's it is."""
        channel, normalized = normalize_address(address)
        if not self.log.opt_out(account_id, normalized, channel, reason, now, by):
            return Applied(f"{normalized}: already opted out", {"suppressed": []}, changed=False)
        return Applied(f"{normalized}: opted out; nothing more will be sent to this address",
                       {"suppressed": [normalized]})

    def optin(self, address: str, now: datetime, *, by: str, account_id: str | None = None) -> Applied:
        """Undo an opt-out (the person texted START); invalid-address suppressions stay."""
        channel, normalized = normalize_address(address)
        self.log.record(Event(Kind.SUPPRESSION, SuppressionStatus.RESUBSCRIBED, account_id=account_id,
                              address=normalized,
                              detail={"address": normalized, "channel": channel, "by": by}), now)
        return Applied(f"{normalized}: opted in again")

    def optout_channel(self, account_id: str, channel: str, now: datetime, *, by: str) -> Applied:
        """The person asked not to be contacted through a medium ("don't text me")."""
        account_id = _required("account", account_id)
        if channel not in CHANNELS:
            raise EventError(f"channel: {channel!r}; one of {', '.join(CHANNELS)} expected")
        self.log.record(Event(Kind.SUPPRESSION, SuppressionStatus.SUPPRESSED, account_id=account_id,
                              error_text="asked not to be "
                        f"contacted by {channel}", detail={"channel": channel, "by": by}), now)
        return Applied(f"{account_id}: no more {channel} messages", {"suppressed": [f"{account_id}:{channel}"]})

    def cease(self, account_id: str, now: datetime, *, by: str, note: str | None = None) -> Applied:
        """A written request to cease communication (or an attorney): collection messages stop."""
        account_id = _required("account", account_id)
        self._record(Kind.ACCOUNT, AccountStatus.CEASED, now, by, account_id=account_id,
                     detail={"note": note} if note else None)
        return Applied(f"{account_id}: cease-communication recorded; profiles that honour it send nothing more")

    def _record(self, kind: Kind, status: str, now: datetime, by: str, *, invoice_id: str | None = None,
                account_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
        if now.utcoffset() is None:
            raise ValueError("now must be an aware datetime")
        account = account_id or (self.log.account_of(invoice_id) if invoice_id else None)  # whose chain it goes to
        with self.log.locked(accounts=[account]) as conn:  # a claim about this invoice waits, then sees it
            if invoice_id and account is None and not self.log.names_invoice(invoice_id, conn):
                raise UnknownInvoice(invoice_id)
            self.log.record(Event(kind, status, invoice_id=invoice_id, account_id=account,
                                  detail={**(detail or {}), "by": by}), now, conn)


def normalize_address(value: str) -> tuple[str, str]:
    """('email', normalised address) or ('sms', E.164 number), as jobs store them."""
    value = (value or "").strip()
    if "@" in value:
        try:
            return "email", email_validator.validate_email(value, check_deliverability=False).normalized
        except email_validator.EmailNotValidError as error:
            raise EventError(f"address: {value!r} is not a valid email address ({error})") from None
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise EventError(f"address: {value!r}; an email address or an E.164 phone number (+8613800138000) expected")
    return "sms", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _required(field: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"{field}: a non-empty id expected")
    return value.strip()


def _amount(value: str | Decimal) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise EventError(f'amount: must be a decimal string like "1200.00", got {value!r}') from None
    if not amount.is_finite() or amount <= 0:
        raise EventError(f'amount: must be a positive decimal string like "1200.00", got {value!r}')
    return amount
