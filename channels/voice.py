"""Automated voice calls through Twilio's Calls API: the rendered script, read by <Say>."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from channels.base import Message, Rate
from channels.twilio_api import DEFAULT_ERRORS, Kind, TwilioAccount, TwilioChannel

# <Say> languages and neural voices per locale language; others use the locale as given.
VOICES = {"zh": ("cmn-CN", "Polly.Zhiyu"), "en": ("en-US", "Polly.Joanna")}
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


def twiml(text: str, locale: str) -> str:
    language, voice = VOICES.get(locale.split("-")[0], (locale, None))
    voice_attr = f" voice={quoteattr(voice)}" if voice else ""
    return f"<Response><Say language={quoteattr(language)}{voice_attr}>{escape(text)}</Say></Response>"


class VoiceChannel(TwilioChannel):
    name = "voice"
    resource = "calls"

    def __init__(self, account: TwilioAccount, sender: str, status_callback: str | None = None,
                 errors: Mapping[int, Kind] = DEFAULT_ERRORS, timeout: float = 15.0,
                 retry_deadline: float = 20.0, per_second: float = 1.0) -> None:
        super().__init__(account, errors, timeout, retry_deadline)
        self.sender, self.status_callback = sender, status_callback
        # Twilio queues calls beyond one per second per account (the default rate).
        self.rate: Rate | None = Rate(f"calls:{account.account_sid}", per_second)

    def cost(self, text: str) -> int:
        return 1

    def parameters(self, message: Message) -> dict[str, Any]:
        params: dict[str, Any] = {"to": message.to, "from_": self.sender, "twiml": twiml(message.text, message.locale)}
        if self.status_callback:
            params["status_callback"] = self.status_callback
            params["status_callback_event"] = STATUS_EVENTS
        return params
