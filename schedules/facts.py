"""What is known about a debtor when deciding: payment state, suppressions, past attempts.

The worker fills this from the contact log; the CLI reads it from JSON. Anything
absent means "nothing known", which is the state of a debtor never contacted.
"""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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


class Facts(_Fact):
    paid: bool = False
    disputed: bool = False
    promised_until: date | None = None
    ceased: bool = False
    suppressed_addresses: frozenset[str] = Field(default_factory=frozenset)
    suppressed_channels: frozenset[Channel] = Field(default_factory=frozenset)
    attempts: tuple[Attempt, ...] = ()


NOTHING_KNOWN = Facts()
