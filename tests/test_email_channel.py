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
from scripted_smtp import Scripted

from channels.base import Message, PermanentError, TransientError
from channels.email import EmailChannel
from worker.smtp_sink import start


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
    assert b"List-Unsubscribe: <https://pay.example.com/u/tok123>, <mailto:" in raw, "one line, not folded"
    parts = {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}
    assert parts["text/plain"].startswith("张伟，您好：") and parts["text/html"].startswith("<p>张伟")


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
