"""One protocol for every channel: `await channel.send(message) -> SendResult`.

An adapter either returns what the provider accepted, or raises one of three errors
that tell the worker what to do next: try again later (`TransientError`), give up on
this channel for this address (`PermanentError`), or stop and reconcile because the
provider may or may not have acted (`UnknownOutcome`) — never send blindly again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """A rendered reminder addressed to one recipient.

    `key` is the delivery's idempotency key: the same key is the same message (one
    Message-ID for email, one provider call for SMS/voice), across retries.
    """

    key: str
    channel: str
    to: str
    text: str
    locale: str
    subject: str | None = None
    html: str | None = None
    unsubscribe_url: str | None = None
    created_at: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True)
class SendResult:
    """What the provider accepted: its name and its id for the message (a Message-ID, a SID)."""

    provider: str
    provider_message_id: str


@dataclass(frozen=True)
class Rate:
    """A sender's throughput, shared by every worker process: `per_second` units of
    `Channel.cost` (SMS segments, calls, emails) through the sender named `sender`."""

    sender: str
    per_second: float


# The channels' own words for an error with no reply code (a lost connection, no answer in time...).
ERROR_WORDS = frozenset({"connection", "timeout", "data", "message", "smtputf8", "twilio"})


class ChannelError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code, self.text = code, text

    @property
    def code_class(self) -> str:
        """The code as one of a few families, for counting (a metric's label may not take
        every code a provider invents): a reply code by its first digit — SMTP's and
        HTTP's `4xx`, `5xx`, Twilio's `2xxxx`, `3xxxx` — or one of `ERROR_WORDS`, else `other`."""
        if self.code.isdigit() and 3 <= len(self.code) <= 5:
            return self.code[0] + "x" * (len(self.code) - 1)
        return self.code if self.code in ERROR_WORDS else "other"


class TransientError(ChannelError):
    """Try again later; `retry_after` (seconds) when the provider said how long."""

    def __init__(self, code: str, text: str, retry_after: float | None = None) -> None:
        super().__init__(code, text)
        self.retry_after = retry_after


class NextWindow(TransientError):
    """Try again, but not before the contact window that allowed this send has closed:
    the provider could not deliver within it (a text that would arrive too late)."""


class PermanentError(ChannelError):
    """This channel will not reach this address. `invalid_address`: suppress the address
    for good (the provider proved it does not exist)."""

    def __init__(self, code: str, text: str, invalid_address: bool = False) -> None:
        super().__init__(code, text)
        self.invalid_address = invalid_address


class UnknownOutcome(ChannelError):
    """The provider may have acted (timeout, 5xx after sending). Record `unknown`; reconcile."""


class Channel(Protocol):
    name: str  # email, sms, voice
    provider: str  # who carries it, as the contact log names it: smtp, twilio
    rate: Rate | None  # None: no throughput limit to respect

    def cost(self, text: str) -> int:
        """Units of `rate` this text uses (SMS segments; one call; one email)."""
        ...

    async def send(self, message: Message) -> SendResult: ...

    async def close(self) -> None: ...
