"""SMS through Twilio's Messages API.

The text's validity is clamped to the time left in the contact window (W-SMS-VALIDITY):
Twilio may queue a message for hours, and a text delivered after 21:00 breaks the
rule however early it was handed over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels.base import Limits, Message, SendResult, TransientError
from channels.twilio_api import DEFAULT_ERRORS, Kind, TwilioAccount, call_twilio

MAX_VALIDITY = 36_000  # seconds; Twilio's ceiling
MIN_VALIDITY = 60  # a text that cannot live a minute is not worth handing over


class SmsChannel:
    name = "sms"
    limits = Limits(max_segments=10, per_second=1.0)

    def __init__(self, account: TwilioAccount, sender: str | None = None, messaging_service_sid: str | None = None,
                 status_callback: str | None = None, errors: Mapping[int, Kind] = DEFAULT_ERRORS,
                 timeout: float = 15.0, retry_deadline: float = 20.0) -> None:
        if not sender and not messaging_service_sid:
            raise ValueError("SMS needs a sender number (DUNNING_TWILIO_FROM) or a Messaging Service SID")
        self.account, self.sender, self.service = account, sender, messaging_service_sid
        self.status_callback, self.errors = status_callback, errors
        self.timeout, self.retry_deadline = timeout, retry_deadline
        self._client: Any = None

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

    async def send(self, message: Message) -> SendResult:
        params = self.parameters(message)
        if self._client is None:
            self._client = self.account.client()  # on the running loop: aiohttp binds to it
        created = await call_twilio(lambda: self._client.messages.create_async(**params), self.errors,
                                    self.timeout, self.retry_deadline)
        return SendResult("twilio", created.sid, created.status or "queued")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()
            self._client = None
