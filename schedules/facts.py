"""What is known about a debtor when deciding: payment state, suppressions, past attempts.

The worker fills this from the contact log; the CLI reads it from JSON. Anything
absent means "nothing known", which is the state of a debtor never contacted.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from schedules.spec import Channel, Outcome

CONNECTED: frozenset[str] = frozenset({"conversation", "voicemail", "delivered"})
UNANSWERED: frozenset[str] = frozenset({"no-answer", "busy", "failed"})


class _Fact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Attempt(_Fact):
    """One earlier contact attempt. Without `invoice_id` or `address` it counts against
    every debt and every address of the debtor: caps err on the side of fewer contacts."""

    invoice_id: str | None = None
    channel: Channel
    stage: str | None = None
    at: AwareDatetime
    outcome: Outcome
    address: str | None = None


class Payment(_Fact):
    """A payment toward the invoice (partial or not), as billing reported it."""

    at: AwareDatetime
    amount: Decimal


class Facts(_Fact):
    paid: bool = False
    written_off: bool = False  # the creditor gave up on it: collection ends
    disputed: bool = False
    paused: bool = False  # an operator paused reminders to the invoice or the account (S-PAUSE)
    promised_until: date | None = None
    ceased: bool = False
    escalated: bool = False  # handed to a person: automatic contact for the invoice stops
    suppressed_addresses: frozenset[str] = Field(default_factory=frozenset)  # opted out (S-OPTOUT)
    invalid_addresses: frozenset[str] = Field(default_factory=frozenset)  # a provider proved them wrong (S-INVALID)
    suppressed_channels: frozenset[Channel] = Field(default_factory=frozenset)  # "don't text me" (S-MEDIUM)
    failed_channels: frozenset[Channel] = Field(default_factory=frozenset)  # failed for good for this very job
    attempts: tuple[Attempt, ...] = ()
    payments: tuple[Payment, ...] = ()

    @field_validator("suppressed_addresses", "invalid_addresses")
    @classmethod
    def _casefold(cls, value: frozenset[str]) -> frozenset[str]:
        """Addresses compare without case: an opt-out of Zhang@X stops zhang@x."""
        return frozenset(a.casefold() for a in value)

    def paid_since(self, moment: AwareDatetime | None) -> Decimal:
        """What was paid toward the invoice at or after `moment` (everything, if None)."""
        return sum((p.amount for p in self.payments if moment is None or p.at >= moment), Decimal(0))


NOTHING_KNOWN = Facts()
