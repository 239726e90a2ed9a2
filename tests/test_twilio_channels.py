"""SMS and voice with the real twilio client against the local Twilio sandbox."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from fakes.twilio import ScriptedSandbox
from twilio.request_validator import RequestValidator

from channels.base import Message, PermanentError, SendResult, TransientError, UnknownOutcome
from channels.sms import SmsChannel
from channels.twilio_api import TwilioAccount
from channels.voice import VoiceChannel, twiml

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
SENDER = "+15005550006"


@pytest.fixture()
def sandbox(tmp_path: Path) -> Iterator[ScriptedSandbox]:
    server = ScriptedSandbox(tmp_path / "outbox").start()
    yield server
    server.stop()


class Callbacks:
    """A plain HTTP server that records the status callbacks it receives."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, str], str]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                received.append((self.path, dict(parse_qsl(body)), self.headers.get("X-Twilio-Signature", "")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/twilio/status"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, dict[str, str], str]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received


def text(to: str = "+8613800138000", valid_for: timedelta | None = timedelta(hours=2), key: str = "k") -> Message:
    return Message(key=key, channel="sms", to=to, text="【示例】发票2026-0042今日到期。回复TD退订", locale="zh-CN",
                   created_at=NOW, valid_until=NOW + valid_for if valid_for else None)


def send(channel: SmsChannel | VoiceChannel, message: Message) -> SendResult:
    async def run() -> SendResult:
        try:
            return await channel.send(message)
        finally:
            await channel.close()
    return asyncio.run(run())


def account(sandbox: ScriptedSandbox) -> TwilioAccount:
    return TwilioAccount(sandbox.account_sid, sandbox.auth_token, sandbox.url)


def test_an_sms_reaches_twilio_with_validity_clamped_to_the_window(sandbox: ScriptedSandbox) -> None:
    result = send(SmsChannel(account(sandbox), SENDER), text(valid_for=timedelta(minutes=90)))
    [accepted] = sandbox.sent()
    assert result.provider_message_id == accepted["sid"] and accepted["sid"].startswith("SM")
    assert accepted["_form"] == {"To": "+8613800138000", "From": SENDER,
                                 "Body": "【示例】发票2026-0042今日到期。回复TD退订", "ValidityPeriod": "5400"}
    assert accepted["num_segments"] == "1"
    long_window = send(SmsChannel(account(sandbox), SENDER), text(valid_for=timedelta(hours=30), key="k2"))
    queued = sandbox.sent()[1]
    assert long_window.provider_message_id == queued["sid"] and queued["status"] in ("queued", "sent", "delivered")
    assert queued["_form"]["ValidityPeriod"] == "36000"


def test_a_text_is_not_handed_over_when_the_window_is_closing(sandbox: ScriptedSandbox) -> None:
    with pytest.raises(TransientError) as caught:
        send(SmsChannel(account(sandbox), SENDER), text(valid_for=timedelta(seconds=30)))
    assert caught.value.code == "30036" and sandbox.requests == []


def test_a_messaging_service_replaces_the_sender(sandbox: ScriptedSandbox) -> None:
    send(SmsChannel(account(sandbox), messaging_service_sid="MG" + "1" * 32), text())
    assert sandbox.sent()[0]["_form"]["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in sandbox.sent()[0]["_form"]


@pytest.mark.parametrize(("to", "code", "invalid"), [
    ("+15005550001", "21211", True), ("+15005550009", "21614", True), ("+15005550004", "21610", False)])
def test_twilio_magic_numbers_are_permanent(sandbox: ScriptedSandbox, to: str, code: str, invalid: bool) -> None:
    with pytest.raises(PermanentError) as caught:
        send(SmsChannel(account(sandbox), SENDER), text(to=to))
    assert caught.value.code == code and caught.value.invalid_address is invalid
    assert sandbox.sent() == []


def test_429_is_retried_after_the_time_twilio_asks(sandbox: ScriptedSandbox) -> None:
    sandbox.script.failures = [{"status": 429, "retry_after": 0.5}]
    began = time.monotonic()
    result = send(SmsChannel(account(sandbox), SENDER), text())
    assert result.provider_message_id.startswith("SM") and time.monotonic() - began >= 0.5
    assert len(sandbox.requests) == 2 and len(sandbox.sent()) == 1


def test_429_for_too_long_gives_up_as_transient(sandbox: ScriptedSandbox) -> None:
    sandbox.script.failures = [{"status": 429, "retry_after": 0.3}] * 5
    with pytest.raises(TransientError) as caught:
        send(SmsChannel(account(sandbox), SENDER, retry_deadline=0.5), text())
    assert caught.value.code == "20429" and caught.value.retry_after == 0.3
    assert sandbox.sent() == []


def test_a_5xx_or_a_timeout_is_an_unknown_outcome_and_is_not_retried(sandbox: ScriptedSandbox) -> None:
    sandbox.script.failures = [{"status": 500}]
    with pytest.raises(UnknownOutcome):
        send(SmsChannel(account(sandbox), SENDER), text())
    sandbox.script.failures = [{"timeout": 2}]
    with pytest.raises(UnknownOutcome) as caught:
        send(SmsChannel(account(sandbox), SENDER, timeout=0.3), text())
    assert caught.value.code == "timeout"
    assert len(sandbox.requests) == 2, "no blind resend"


def test_wrong_credentials_are_permanent(sandbox: ScriptedSandbox) -> None:
    wrong = TwilioAccount(sandbox.account_sid, "not-the-token", sandbox.url)
    with pytest.raises(PermanentError) as caught:
        send(SmsChannel(wrong, SENDER), text())
    assert caught.value.code == "20003"


def test_status_callbacks_are_signed_for_the_exact_url(sandbox: ScriptedSandbox) -> None:
    callbacks = Callbacks()
    result = send(SmsChannel(account(sandbox), SENDER, status_callback=callbacks.url), text())
    received = callbacks.wait_for(2)
    assert [form["MessageStatus"] for _, form, _ in received] == ["sent", "delivered"]
    validator = RequestValidator(sandbox.auth_token)
    for _path, form, signature in received:
        assert form["MessageSid"] == result.provider_message_id
        assert validator.validate(callbacks.url, form, signature)
        assert not validator.validate(callbacks.url + "?x=1", form, signature)
    callbacks.server.shutdown()


def test_undelivered_carries_the_error_code(sandbox: ScriptedSandbox) -> None:
    callbacks = Callbacks()
    sandbox.script.outcomes["+8613900139000"] = "undelivered"
    send(SmsChannel(account(sandbox), SENDER, status_callback=callbacks.url), text(to="+8613900139000"))
    final = callbacks.wait_for(2)[-1][1]
    assert final["MessageStatus"] == "undelivered" and final["ErrorCode"] == "30005"
    callbacks.server.shutdown()


def test_a_voice_call_reads_the_script_in_the_debtor_language(sandbox: ScriptedSandbox) -> None:
    callbacks = Callbacks()
    sandbox.script.outcomes["+8613800138000"] = "no-answer"
    call = Message(key="c", channel="voice", to="+8613800138000", text="您好，发票<2026-0042>&今日到期。",
                   locale="zh-CN")
    result = send(VoiceChannel(account(sandbox), SENDER, status_callback=callbacks.url), call)
    [placed] = sandbox.sent("Calls")
    assert result.provider_message_id == placed["sid"] and placed["sid"].startswith("CA")
    assert placed["_form"]["Twiml"] == ('<Response><Say language="cmn-CN" voice="Polly.Zhiyu">'
                                        '您好，发票&lt;2026-0042&gt;&amp;今日到期。</Say></Response>')
    statuses = [form["CallStatus"] for _, form, _ in callbacks.wait_for(3)]
    assert statuses == ["initiated", "ringing", "no-answer"]
    callbacks.server.shutdown()


def test_twiml_for_english() -> None:
    assert twiml("Hello & goodbye", "en-US") == ('<Response><Say language="en-US" voice="Polly.Joanna">'
                                                  'Hello &amp; goodbye</Say></Response>')
