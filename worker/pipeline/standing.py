"""What the worker holds true of a reminder before it asks `decide`, in one place for the
worker (`reminder.py`) and its forecast (`forecast.py`), so the two cannot drift: a job
billing cancelled or whose person was erased is not decided at all, and an invoice whose
payments since the job was accepted cover it is paid, whatever billing called them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from schedules import Facts
from worker.contact_log.facts import Known


def dropped(known: Known) -> str | None:
    """Why the job is not to be decided at all: cancelled by billing, or its person erased
    (the worker also checks that the erasure came after the job was accepted)."""
    if known.cancelled:
        return "cancelled by the billing system"
    if known.erased:
        return "the account's personal data was erased"
    return None


def owed(amount_due: Decimal, facts: Facts, accepted_at: datetime | None) -> Decimal:
    """What is still owed: the job's amount less payments reported since intake accepted it."""
    return amount_due if not facts.payments else amount_due - facts.paid_since(accepted_at)


def as_decided(facts: Facts, balance: Decimal) -> Facts:
    """The facts `decide` is given: nothing owed is paid."""
    return facts if balance > 0 else facts.model_copy(update={"paid": True})
