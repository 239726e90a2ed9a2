"""`dunning serve` for real (uvicorn on loopback) with the Twilio sandbox signing its
requests: status callbacks, SMS replies, one-click unsubscribes; on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
from fakes.twilio import ScriptedSandbox
from harness import serving
from twilio.request_validator import RequestValidator

from channels.twilio_api import invalid_number
from worker.contact_log import Claim, ContactLog
from worker.contact_log.kinds import Event, Kind
from worker.http.callback_order import MESSAGE_ORDER
from worker.messages import unsubscribe

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
SECRET = "serve-test-secret-of-at-least-32-characters"


class Served:
    def __init__(self, url: str, sandbox: ScriptedSandbox, log: ContactLog) -> None:
        self.url, self.sandbox, self.log = url, sandbox, log

    def post(self, path: str, params: dict[str, str], signature: str | None = "sign",
             signed_for: str | None = None) -> int:
        """POST a form as Twilio would; signed for our public URL unless told otherwise."""
        headers = {}
        if signature == "sign":
            signature = RequestValidator(self.sandbox.auth_token).compute_signature(
                signed_for or self.url + path, params)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        return _send(self.url + path, params, headers)

    def events(self) -> list[tuple[str, str]]:
        return [(r["kind"], r["status"]) for r in self.log.history()]


def _send(url: str, params: dict[str, str], headers: dict[str, str] | None = None, method: str = "POST") -> int:
    data = urllib.parse.urlencode(params).encode() if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture()
def served(log: ContactLog, tmp_path: Path) -> Iterator[Served]:
    sandbox = ScriptedSandbox(tmp_path / "twilio").start()
    env = {"DUNNING_TWILIO_ACCOUNT_SID": sandbox.account_sid, "DUNNING_TWILIO_AUTH_TOKEN": sandbox.auth_token,
           "DUNNING_SECRET_KEY": SECRET, "DUNNING_SENDER_PHONE": "+14155550123"}
    with serving(log, env, lambda: NOW) as url:
        yield Served(url, sandbox, log)
    sandbox.stop()


def _sent_sms(log: ContactLog, sid: str, channel: str = "sms", to: str = "+8613800138000") -> int:
    claim = Claim(delivery_key=f"J-{sid}#{channel}", job_id=f"J-{sid}", invoice_id="INV-1", account_id="ACC-1",
                  channel=channel, recipient=to, stage="due_day", template=None, template_version=None,
                  reasons=(), rules=(), zones=())
    delivery = log.claim(claim, NOW)
    assert delivery is not None
    log.record(Event(Kind.DELIVERY, "sent", delivery_id=delivery.id, provider="twilio", provider_message_id=sid), NOW)
    return delivery.id


def test_a_forged_or_unsigned_callback_is_refused_and_changes_nothing(served: Served) -> None:
    _sent_sms(served.log, "SM1")
    before = served.events()
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": served.sandbox.account_sid}
    assert served.post("/twilio/status", params, signature="bm90LWEtc2lnbmF0dXJl") == 403
    assert served.post("/twilio/status", params, signature=None) == 403
    other_host = "http://attacker.example" + "/twilio/status"  # signed, but not for our public URL
    assert served.post("/twilio/status", params, signed_for=other_host) == 403
    tampered = RequestValidator(served.sandbox.auth_token).compute_signature(served.url + "/twilio/status", params)
    assert served.post("/twilio/status", {**params, "MessageStatus": "undelivered"}, signature=tampered) == 403
    assert served.events() == before


def test_callbacks_move_forward_only_and_every_one_is_logged(served: Served) -> None:
    delivery_id = _sent_sms(served.log, "SM2")
    for status in ("delivered", "sent", "delivered"):  # out of order, then a repeat
        assert served.post("/twilio/status", {"MessageSid": "SM2", "MessageStatus": status}) == 204
    rows = [r for r in served.log.history() if r["provider_message_id"] == "SM2"]
    assert [(r["kind"], r["status"]) for r in rows] == [
        ("delivery", "sent"), ("delivery", "delivered"), ("callback", "sent"), ("callback", "delivered")]
    assert rows[2]["error_text"] == "not applied: out of order: already delivered"
    assert rows[3]["error_text"] == "not applied: duplicate"
    assert served.log.by_provider_id("SM2").applied == ("delivered",)  # type: ignore[union-attr]
    assert rows[1]["delivery_id"] == delivery_id


def test_callbacks_arriving_at_once_at_two_servers_still_move_forward_only(log: ContactLog, tmp_path: Path) -> None:
    sandbox = ScriptedSandbox(tmp_path / "twilio").start()
    env = {"DUNNING_TWILIO_ACCOUNT_SID": sandbox.account_sid, "DUNNING_TWILIO_AUTH_TOKEN": sandbox.auth_token,
           "DUNNING_SECRET_KEY": SECRET}
    _sent_sms(log, "SM9")
    statuses = ["queued", "sending", "sent", "delivered", "read"] * 4
    random.Random(7).shuffle(statuses)
    try:
        with serving(log, env, lambda: NOW) as one, serving(log, env, lambda: NOW) as two:
            servers = [Served(one, sandbox, log), Served(two, sandbox, log)]
            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(lambda n: servers[n % 2].post(
                    "/twilio/status", {"MessageSid": "SM9", "MessageStatus": statuses[n]}), range(len(statuses))))
    finally:
        sandbox.stop()
    assert codes == [204] * len(statuses)
    arrived = [r for r in log.history() if r["provider_message_id"] == "SM9"
               and (r["kind"] == "callback" or (r["detail"] or {}).get("callback"))]
    applied = [r["status"] for r in arrived if r["kind"] == "delivery"]
    ranks = [MESSAGE_ORDER[s] for s in applied]
    assert ranks == sorted(set(ranks)), f"applied out of order or twice: {applied}"
    assert len(arrived) == len(statuses), "every callback is kept, applied or not"


def test_an_unanswered_call_counts_as_unanswered_and_an_undelivered_text_suppresses_the_number(
        served: Served) -> None:
    _sent_sms(served.log, "CA3", channel="voice", to="+8613900139000")
    for status in ("initiated", "ringing", "no-answer"):
        assert served.post("/twilio/status", {"CallSid": "CA3", "CallStatus": status}) == 204
    [attempt] = served.log.facts_for("ACC-1", "INV-1", "other", NOW).attempts
    assert attempt.outcome == "no-answer"
    _sent_sms(served.log, "SM4", to="+8613700137000")
    served.post("/twilio/status", {"MessageSid": "SM4", "MessageStatus": "undelivered", "ErrorCode": "30005"})
    assert served.log.suppressed("+8613700137000")


@pytest.mark.parametrize("code", ["21211", "21614", "21635", "21217", "30005", "30006"])
def test_a_callback_suppresses_a_number_exactly_when_a_reply_would(served: Served, code: str) -> None:
    """One table of invalid-number codes (`channels.twilio_api.DEFAULT_ERRORS`): a status
    callback suppresses the number for every code that makes the API's reply an invalid
    address, and for no other."""
    _sent_sms(served.log, "SM5", to="+8613600136000")
    served.post("/twilio/status", {"MessageSid": "SM5", "MessageStatus": "undelivered", "ErrorCode": code})
    assert served.log.suppressed("+8613600136000")
    assert invalid_number(code)


def test_a_callback_with_another_error_does_not_suppress(served: Served) -> None:
    _sent_sms(served.log, "SM6", to="+8613500135000")
    served.post("/twilio/status", {"MessageSid": "SM6", "MessageStatus": "undelivered", "ErrorCode": "30003"})
    assert not served.log.suppressed("+8613500135000"), "an unreachable handset may be reachable tomorrow"


@pytest.mark.parametrize("word", ["STOP", " stop. ", "Opt-Out", "退订", "td", "停止！", "UNSUBSCRIBE"])
def test_an_opt_out_reply_suppresses_the_number_with_exactly_one_confirmation(served: Served, word: str) -> None:
    number = "+8613811110000"
    status, replies = served.sandbox.reply(served.url + "/twilio/inbound", number, word)
    assert status == 200 and len(replies) == 1
    assert served.log.suppressed(number)
    again, second = served.sandbox.reply(served.url + "/twilio/inbound", number, "STOP")
    assert again == 200 and second == [], "one confirmation, nothing else"
    assert len([m for m in served.sandbox.sent() if m["to"] == number]) == 1


def test_start_resubscribes_help_answers_and_other_text_is_kept_for_a_person(served: Served) -> None:
    number = "+8613811119999"
    served.sandbox.reply(served.url + "/twilio/inbound", number, "STOP")
    _, [confirmation] = served.sandbox.reply(served.url + "/twilio/inbound", number, "start")
    assert "subscribed again" in confirmation and not served.log.suppressed(number)
    _, [help_text] = served.sandbox.reply(served.url + "/twilio/inbound", number, "Help?")
    assert "+14155550123" in help_text and "STOP" in help_text
    _, nothing = served.sandbox.reply(served.url + "/twilio/inbound", number, "I paid yesterday, check please")
    assert nothing == []
    [kept] = [r for r in served.log.history() if r["kind"] == "inbound" and r["status"] == "other"]
    assert kept["detail"]["body"] == "I paid yesterday, check please"


def test_a_forged_inbound_stop_changes_nothing(served: Served) -> None:
    params = {"From": "+8613811118888", "To": "+15005550006", "Body": "STOP", "MessageSid": "SM9"}
    assert served.post("/twilio/inbound", params, signature="Zm9yZ2Vk") == 403
    assert not served.log.suppressed("+8613811118888")


def test_one_click_unsubscribe_needs_a_post_and_a_genuine_token(served: Served) -> None:
    address = "zhang.wei@example.com"
    link = unsubscribe.url(served.url, SECRET, "ACC-1", "email", address)
    assert _send(link, {}, method="GET") == 200
    assert not served.log.suppressed(address), "GET only shows a confirmation"
    forged = unsubscribe.url(served.url, "not-our-secret", "ACC-1", "email", address)
    assert _send(forged, {"List-Unsubscribe": "One-Click"}) == 404
    assert not served.log.suppressed(address)
    assert _send(link, {"List-Unsubscribe": "One-Click"}) == 200
    assert served.log.suppressed(address)


def _hang_up(url: str, request: bytes) -> None:
    """Send `request` raw and close the connection without reading the answer."""
    import socket
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    with socket.create_connection((host or "127.0.0.1", port or 80), timeout=5) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("body", ["broken chunks", "cut short"])
def test_a_client_that_hangs_up_mid_request_is_an_info_line_not_an_error(
        served: Served, caplog: pytest.LogCaptureFixture, body: str) -> None:
    """A caller gone before its body arrived is nobody's error: one info line, no traceback,
    no 500 written to a closed connection; the server keeps answering."""
    import logging
    import time
    head = b"POST /twilio/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    request = (head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nMessa\r\nzz-not-hex\r\n" if body == "broken chunks"
               else head + b"Content-Length: 500\r\n\r\nMessageSid=SM1&MessageStatus=deliv")
    caplog.set_level(logging.INFO)
    _hang_up(served.url, request)
    time.sleep(1.0)
    assert _send(served.url + "/v1/openapi.json", {}, method="GET") == 200
    # uvicorn may warn "Invalid HTTP request received." of the broken chunks: true, and no error of ours
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info
             or (r.name.startswith("dunning") and r.levelno >= logging.WARNING)]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert any("disconnected" in r.getMessage() for r in caplog.records if r.name.startswith("dunning"))
