"""The hand-over to a person: the email a supervisor gets when a case is escalated.

Automation has done its part (three unanswered calls, or the ladder's escalation
stage): the supervisor needs the whole case in one message — who, how much, how late,
why now, and every contact so far — without opening the contact log. Addresses in the
history are masked; the debtor's own contact details are given in full, since calling
them back is the supervisor's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from babel.numbers import format_currency

from schedules.zones import local_day
from worker.contact_log.kinds import Kind
from worker.jobs.contract import Job
from worker.masking import mask


def subject(job: Job, now: datetime) -> str:
    return (f"Escalated: invoice {job.invoice.number}, {job.debtor.name} ({job.debtor.account_id}), "
            f"{_days_late(job, now)} days past due")


def body(job: Job, reasons: Iterable[str], history: Iterable[Mapping[str, Any]], now: datetime,
         balance: Any = None) -> str:
    invoice, debtor = job.invoice, job.debtor
    amount = format_currency(balance if balance is not None else invoice.amount_due, invoice.currency, locale="en_US")
    lines = [
        "Automatic reminders for this invoice have stopped; it is yours now.",
        "",
        f"Why:        {'; '.join(reasons)}",
        f"Invoice:    {invoice.number} (id {invoice.id}), due {invoice.due_date}, {_days_late(job, now)} days past due",
        f"Owed:       {amount}",
        f"Debtor:     {debtor.name}" + (f", {debtor.company}" if debtor.company else "") + f" ({debtor.account_id})",
        f"Phone:      {debtor.phone or '-'}",
        f"Email:      {debtor.email or '-'}",
        f"Locale:     {debtor.locale}, time zone {debtor.timezone or 'unknown'}",
        "",
        "Contact history (UTC):",
    ]
    count = 0
    for row in history:
        if row.get("kind") not in (Kind.DELIVERY, Kind.INVOICE, Kind.SUPPRESSION, Kind.ACCOUNT):
            continue
        count += 1
        when = row["occurred_at"].strftime("%Y-%m-%d %H:%M")
        recipient = mask("address", row["recipient"]) if row.get("recipient") else ""
        what = " ".join(str(part) for part in (row.get("channel"), row.get("stage"), recipient) if part)
        error = f" ({row['error_code']}: {row.get('error_text') or ''})" if row.get("error_code") else ""
        lines.append(f"  {when}  {row['kind']:<11} {row['status']:<12} {what}{error}")
    if not count:
        lines.append("  (no contact recorded)")
    lines += ["", f"Full log: dunning log show --invoice {invoice.id}"]
    return "\n".join(lines) + "\n"


def _days_late(job: Job, now: datetime) -> int:
    return (local_day(job.debtor, now) - job.invoice.due_date).days
