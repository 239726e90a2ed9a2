"""SMS through Twilio's Messages API.

The text's validity is clamped to the time left in the contact window (W-SMS-VALIDITY):
Twilio may queue a message for hours, and a text delivered after 21:00 breaks the
rule however early it was handed over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels.base import Limits, Message, TransientError
from channels.twilio_api import DEFAULT_ERRORS, Kind, TwilioAccount, TwilioChannel

MAX_VALIDITY = 36_000  # seconds; Twilio's ceiling
MIN_VALIDITY = 60  # a text that cannot live a minute is not worth handing over


class SmsChannel(TwilioChannel):
    name = "sms"
    resource = "messages"
    limits = Limits(max_segments=10, per_second=1.0)

    def __init__(self, account: TwilioAccount, sender: str | None = None, messaging_service_sid: str | None = None,
                 status_callback: str | None = None, errors: Mapping[int, Kind] = DEFAULT_ERRORS,
                 timeout: float = 15.0, retry_deadline: float = 20.0) -> None:
        if not sender and not messaging_service_sid:
            raise ValueError("SMS needs a sender number (DUNNING_TWILIO_FROM) or a Messaging Service SID")
        super().__init__(account, errors, timeout, retry_deadline)
        self.sender, self.service, self.status_callback = sender, messaging_service_sid, status_callback

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
                raise TransientError("30036", "the contact window closes before the text could be delivered")
            params["validity_period"] = min(left, MAX_VALIDITY)
        return params
