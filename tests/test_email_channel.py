"""Email through aiosmtplib to a real aiosmtpd server: content, headers, pooling, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message as Parsed
from email.policy import default
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from fakes.smtp import Scripted

from channels.base import Message, PermanentError, TransientError
from channels.email import EmailChannel
from worker.local.smtp_sink import start


@pytest.fixture()
def smtp(tmp_path: Path) -> Iterator[tuple[Scripted, Controller]]:
    handler = Scripted(tmp_path / "outbox")
    controller = start(handler)
    yield handler, controller
    controller.stop()


def channel(controller: Controller) -> EmailChannel:
    return EmailChannel(f"smtp://127.0.0.1:{controller.port}", "billing@example.com", "Example Trading",
                        retry_deadline=3)


def reminder(key: str = "INV-1/due_day#email", to: str = "zhang.wei@example.com") -> Message:
    return Message(key=key, channel="email", to=to, text="张伟，您好：\n\n发票 2026-0042 今日到期。", locale="zh-CN",
                   subject="今日到期：发票 2026-0042", html="<p>张伟，您好：</p>",
                   unsubscribe_url="https://pay.example.com/u/tok123",
                   created_at=datetime(2026, 12, 1, 1, 0, tzinfo=UTC))


def only(handler: Scripted) -> Parsed:
    [message] = handler.messages()
    return message


def test_a_reminder_arrives_multipart_with_its_headers(smtp: tuple[Scripted, Controller]) -> None:
    handler, controller = smtp
    email = channel(controller)
    result = asyncio.run(email.send(reminder()))
    message = only(handler)
    assert result.provider == "smtp" and result.provider_message_id == message["Message-ID"]
    assert message["Message-ID"] == email.message_id("INV-1/due_day#email")
    assert message["Subject"] == "今日到期：发票 2026-0042"
    assert message["From"] == "Example Trading <billing@example.com>"
    assert message["Date"] == "Tue, 01 Dec 2026 01:00:00 +0000"
    assert message["List-Unsubscribe"] == ("<https://pay.example.com/u/tok123>, "
                                           "<mailto:billing@example.com?subject=unsubscribe>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = (handler.folder / next(handler.folder.glob("*.eml")).name).read_bytes()
    assert b"List-Unsubscribe: <https://pay.example.com/u/tok123>,\r\n <mailto:" in raw, "folded between URIs"
    parts = {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}
    assert parts["text/plain"].startswith("张伟，您好：") and parts["text/html"].startswith("<p>张伟")


def test_one_click_is_offered_only_over_https() -> None:
    """RFC 8058: List-Unsubscribe-Post only with an https URI; over plain http the link and
    the mailto: address are still given, without the one-click promise."""
    email = EmailChannel("smtp://127.0.0.1:25", "billing@example.com")
    plain = reminder().__class__(**{**reminder().__dict__, "unsubscribe_url": "http://127.0.0.1:8000/u/tok123"})
    parsed = message_from_bytes(email.build(plain), policy=default)
    assert parsed["List-Unsubscribe"] == ("<http://127.0.0.1:8000/u/tok123>, "
                                          "<mailto:billing@example.com?subject=unsubscribe>")
    assert parsed["List-Unsubscribe-Post"] is None
    secure = message_from_bytes(email.build(reminder()), policy=default)
    assert secure["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_message_id_is_the_same_for_the_same_key() -> None:
    email = EmailChannel("smtp://127.0.0.1:25", "billing@example.com")
    assert email.message_id("k") == email.message_id("k") != email.message_id("k2")
    assert email.message_id("k").endswith("@example.com>")


def test_connections_are_reused(smtp: tuple[Scripted, Controller]) -> None:
    handler, controller = smtp
    email = channel(controller)

    async def send_many() -> None:
        await asyncio.gather(*(email.send(reminder(f"K{i}")) for i in range(20)))
        await email.close()

    asyncio.run(send_many())
    assert len(handler.messages()) == 20
    assert handler.connections <= 4


def test_451_then_success_is_retried_in_process(smtp: tuple[Scripted, Controller]) -> None:
    handler, controller = smtp
    handler.data = ["451 4.3.0 Temporary local problem"]
    asyncio.run(channel(controller).send(reminder()))
    assert len(handler.messages()) == 1


def test_a_mailbox_that_does_not_exist_is_permanent_and_invalid(smtp: tuple[Scripted, Controller]) -> None:
    handler, controller = smtp
    handler.rcpt["nobody@example.com"] = ["550 5.1.1 <nobody@example.com>: Recipient address rejected"]
    with pytest.raises(PermanentError) as caught:
        asyncio.run(channel(controller).send(reminder(to="nobody@example.com")))
    assert caught.value.code == "550" and caught.value.invalid_address
    assert handler.messages() == []


def test_a_policy_refusal_is_permanent_but_not_an_invalid_address(smtp: tuple[Scripted, Controller]) -> None:
    handler, controller = smtp
    handler.data = ["554 5.7.1 Message rejected as spam"]
    with pytest.raises(PermanentError) as caught:
        asyncio.run(channel(controller).send(reminder()))
    assert caught.value.code == "554" and not caught.value.invalid_address


def test_a_mailbox_full_is_transient(smtp: tuple[Scripted, Controller]) -> None:
    handler, controller = smtp
    handler.rcpt["full@example.com"] = ["452 4.2.2 Mailbox full"] * 10
    with pytest.raises(TransientError) as caught:
        asyncio.run(channel(controller).send(reminder(to="full@example.com")))
    assert caught.value.code == "452"


def test_a_server_that_is_down_is_transient() -> None:
    email = EmailChannel("smtp://127.0.0.1:9", "billing@example.com", retry_deadline=0.5, timeout=2)
    with pytest.raises(TransientError) as caught:
        asyncio.run(email.send(reminder()))
    assert caught.value.code == "connection"


def test_a_bad_url_is_refused_with_the_expected_form() -> None:
    with pytest.raises(ValueError, match="smtp://host:587"):
        EmailChannel("http://mail.example.com", "billing@example.com")


def test_the_message_is_canonical_mime_and_refuses_header_injection() -> None:
    email = EmailChannel("smtp://127.0.0.1:25", "billing@example.com", "示例贸易有限公司")
    long_subject = "逾期提醒：发票 2026-0042 已逾期 12 天，请尽快安排付款，如已付款请忽略本提醒" * 2
    raw = email.build(reminder().__class__(**{**reminder().__dict__, "subject": long_subject}))
    head, _, _ = raw.partition(b"\r\n\r\n")
    assert b"\n" not in head.replace(b"\r\n", b""), "every header line ends in CRLF"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "RFC 5322 line limit"
    parsed = message_from_bytes(raw, policy=default)
    assert parsed["Subject"] == long_subject and parsed["From"] == "示例贸易有限公司 <billing@example.com>"
    assert not parsed.defects and all(not part.defects for part in parsed.walk())
    assert parsed.get_body(("plain",)).get_content() == "张伟，您好：\r\n\r\n发票 2026-0042 今日到期。"
    with pytest.raises(ValueError, match="To header contains a line break"):
        email.build(reminder(to="a@example.com\r\nBcc: everyone@example.com"))


def test_an_internationalized_address_goes_with_smtputf8_when_offered(tmp_path: Path) -> None:
    handler = Scripted(tmp_path / "outbox")
    controller = start(handler, smtputf8=True)
    try:
        asyncio.run(channel(controller).send(reminder(to="张伟@example.com")))
    finally:
        controller.stop()
    message = only(handler)
    assert message["To"] == "张伟@example.com"


def test_an_internationalized_address_fails_for_good_where_smtputf8_is_not_offered(tmp_path: Path) -> None:
    handler = Scripted(tmp_path / "outbox")
    controller = start(handler, smtputf8=False)
    try:
        with pytest.raises(PermanentError) as refused:
            asyncio.run(channel(controller).send(reminder(to="张伟@example.com")))
    finally:
        controller.stop()
    assert refused.value.code == "smtputf8" and "internationalized address" in refused.value.text
    assert not refused.value.invalid_address, "the address may be fine; this relay cannot take it"
    assert handler.messages() == []


def test_long_header_values_are_folded_and_parse_strictly(smtp: tuple[Scripted, Controller]) -> None:
    """A 200-character account id in the unsubscribe token (the contract allows it): every
    line stays within RFC 5322's 998 octets, and a strict parser reads the headers back."""
    from email.policy import strict

    from worker.messages import unsubscribe

    handler, controller = smtp
    account = "账" * 200
    address = "a" * 60 + "@" + "long-subdomain." * 10 + "example.com"
    link = unsubscribe.url("https://billing.example.com", "k" * 32, account, "email", address)
    message = Message(key="INV-9/due_day#email", channel="email", to=address, text="hello", locale="en-US",
                      subject="A subject " * 30, unsubscribe_url=link, created_at=datetime(2026, 12, 1, tzinfo=UTC))
    asyncio.run(channel(controller).send(message))
    raw = next(handler.folder.glob("*.eml")).read_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    assert max(len(line) for line in head.splitlines()) <= 998
    parsed = message_from_bytes(raw, policy=strict)
    assert parsed["List-Unsubscribe"] == f"<{link}>, <mailto:billing@example.com?subject=unsubscribe>"
    assert unsubscribe.read("k" * 32, link.rsplit("/", 1)[1]) == (None, "email", address), \
        "an account id too long to carry is left out; the opt-out is by address"


def test_a_timeout_after_the_data_is_unknown_not_retried(tmp_path: Path) -> None:
    """The server takes the data and never answers: the message may be delivered, so it is
    not sent again (README: timeouts are `unknown`)."""
    from channels.base import UnknownOutcome

    class Silent(Scripted):
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            self.data_seen = getattr(self, "data_seen", 0) + 1
            await asyncio.sleep(5)
            return "250 OK"

    handler = Silent(tmp_path / "outbox")
    controller = start(handler)
    try:
        email = EmailChannel(f"smtp://127.0.0.1:{controller.port}", "billing@example.com", timeout=1.0,
                             retry_deadline=3)
        with pytest.raises(UnknownOutcome) as unknown:
            asyncio.run(email.send(reminder()))
    finally:
        controller.stop()
    assert unknown.value.code == "data" and handler.data_seen == 1, "handed over once, not again"


def test_the_benchmarks_postfix_sink_takes_and_counts_what_the_channel_sends() -> None:
    """bench/throughput.py measures against postfix's smtp-sink: the channel's messages
    (more than its counter fills a pipe with, over its pool) are all taken, and the count
    it gives on stopping is theirs."""
    from worker.local.smtp_sink import PostfixSink

    sink = PostfixSink().start()
    try:
        email = EmailChannel(f"smtp://127.0.0.1:{sink.port}", "billing@example.com", "Example Ltd")

        async def send_all() -> list[str]:
            results = await asyncio.gather(*(email.send(reminder(f"INV-{n}/due_day#email")) for n in range(3000)))
            return [result.provider_message_id or "" for result in results]

        ids = asyncio.run(send_all())
    finally:
        sink.stop()
    assert len(set(ids)) == 3000 and sink.accepted == 3000
