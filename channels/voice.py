"""Automated voice calls through Twilio's Calls API: the rendered script, read by <Say>."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from channels.base import Limits, Message, SendResult
from channels.twilio_api import DEFAULT_ERRORS, Kind, TwilioAccount, call_twilio

# <Say> languages and neural voices per locale language; others use the locale as given.
VOICES = {"zh": ("cmn-CN", "Polly.Zhiyu"), "en": ("en-US", "Polly.Joanna")}
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


def twiml(text: str, locale: str) -> str:
    language, voice = VOICES.get(locale.split("-")[0], (locale, None))
    voice_attr = f" voice={quoteattr(voice)}" if voice else ""
    return f"<Response><Say language={quoteattr(language)}{voice_attr}>{escape(text)}</Say></Response>"


class VoiceChannel:
    name = "voice"
    limits = Limits(max_length=4000, per_second=1.0)

    def __init__(self, account: TwilioAccount, sender: str, status_callback: str | None = None,
                 errors: Mapping[int, Kind] = DEFAULT_ERRORS, timeout: float = 15.0,
                 retry_deadline: float = 20.0) -> None:
        self.account, self.sender, self.status_callback, self.errors = account, sender, status_callback, errors
        self.timeout, self.retry_deadline = timeout, retry_deadline
        self._client: Any = None

    def parameters(self, message: Message) -> dict[str, Any]:
        params: dict[str, Any] = {"to": message.to, "from_": self.sender, "twiml": twiml(message.text, message.locale)}
        if self.status_callback:
            params["status_callback"] = self.status_callback
            params["status_callback_event"] = STATUS_EVENTS
        return params

    async def send(self, message: Message) -> SendResult:
        params = self.parameters(message)
        if self._client is None:
            self._client = self.account.client()
        created = await call_twilio(lambda: self._client.calls.create_async(**params), self.errors,
                                    self.timeout, self.retry_deadline)
        return SendResult("twilio", created.sid, created.status or "queued")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()
            self._client = None
