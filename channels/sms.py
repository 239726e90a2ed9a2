"""SMS through Twilio's Messages API.

The text's validity is clamped to the time left in the contact window (W-SMS-VALIDITY):
Twilio may queue a message for hours, and a text delivered after 21:00 breaks the
rule however early it was handed over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels.base import Message, NextWindow, Rate
from channels.segments import count_segments
from channels.twilio_api import DEFAULT_ERRORS, Kind, TwilioAccount, TwilioChannel

MAX_VALIDITY = 36_000  # seconds; Twilio's ceiling
MIN_VALIDITY = 60  # a text that cannot live a minute is not worth handing over
LONG_CODE_RATE, SHORT_CODE_RATE = 1.0, 100.0  # segments per second (COMPLIANCE.md, carriers' defaults)


def default_rate(sender: str) -> float:
    """A short code (5-6 digits, no +) sends 100 segments/s; a long code or a service, 1/s."""
    return SHORT_CODE_RATE if sender.isdigit() and 5 <= len(sender) <= 6 else LONG_CODE_RATE


class SmsChannel(TwilioChannel):
    name = "sms"
    resource = "messages"

    def __init__(self, account: TwilioAccount, sender: str | None = None, messaging_service_sid: str | None = None,
                 status_callback: str | None = None, errors: Mapping[int, Kind] = DEFAULT_ERRORS,
                 timeout: float = 15.0, retry_deadline: float = 20.0, per_second: float | None = None) -> None:
        if not sender and not messaging_service_sid:
            raise ValueError("SMS needs a sender number (DUNNING_TWILIO_FROM) or a Messaging Service SID")
        super().__init__(account, errors, timeout, retry_deadline)
        self.sender, self.service, self.status_callback = sender, messaging_service_sid, status_callback
        name = messaging_service_sid or sender or ""
        self.rate: Rate | None = Rate(f"sms:{name}", per_second or default_rate(name))

    def cost(self, text: str) -> int:
        return max(count_segments(text).parts, 1)

    def parameters(self, message: Message) -> dict[str, Any]:
        params: dict[str, Any] = {"to": message.to, "body": message.text}
        if self.service:
            params["messaging_service_sid"] = self.service
        else:
            params["from_"] = self.sender
        if self.status_callback:
            params["status_callback"] = self.status_callback
        if message.valid_until is not None and message.created_at is not None:
            left = int((message.valid_until - message.created_at).total_seconds())
            if left < MIN_VALIDITY:
                raise NextWindow("30036", "the contact window closes before the text could be delivered")
            params["validity_period"] = min(left, MAX_VALIDITY)
        return params
