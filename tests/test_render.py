"""Rendering the operator's templates: every stage, channel and locale; strict, sandboxed, versioned."""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from conftest import make_job

from worker.messages.context import message_context, opt_out_line
from worker.messages.render import Renderer, TemplateError
from worker.settings import SHIPPED_DIR, Sender

STAGES = ("pre_due_7", "pre_due_3", "due_day", "overdue_early", "overdue_late")
DUE = date(2026, 12, 1)


def context(locale: str = "zh-CN", stage: str = "due_day", today: date = DUE, opt_out: str | None = None,
            **changes: object) -> dict:
    job = make_job(debtor__locale=locale, **changes)
    return message_context(job.invoice, job.debtor, stage, today, Sender(), opt_out)


@pytest.fixture()
def own_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(SHIPPED_DIR, target)
    return target


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_renders_on_every_channel(locale: str, stage: str) -> None:
    renderer = Renderer()
    for channel in ("email", "sms", "voice"):
        message = renderer.render(stage, channel, locale, context(locale, stage))
        assert message.template == f"{locale}/{stage}.{channel}.j2"
        assert "2026-0042" in message.text, "every message names the invoice"
        assert ("12,800.00" in message.text), "and the amount"
        if channel == "email":
            assert message.subject and message.html and "2026-0042" in message.subject
            assert message.html.startswith("<!DOCTYPE html>") and f'lang="{locale}"' in message.html


def test_money_and_dates_follow_the_locale() -> None:
    renderer = Renderer()
    zh = renderer.render("pre_due_7", "email", "zh-CN", context("zh-CN", "pre_due_7", date(2026, 11, 24)))
    assert "¥12,800.00" in zh.text and "2026年12月1日" in zh.text and "还有 7 天" in zh.text
    en = renderer.render("pre_due_7", "email", "en-US", context("en-US", "pre_due_7", date(2026, 11, 24)))
    assert "CN¥12,800.00" in en.text and "December 1, 2026" in en.text
    yen = renderer.render("due_day", "sms", "en-US", context("en-US", invoice__currency="JPY",
                                                              invoice__amount_due="150000"))
    assert "¥150,000" in yen.text and "150,000.00" not in yen.text


def test_the_due_day_sms_says_to_ignore_it_if_already_paid() -> None:
    renderer = Renderer()
    assert "如您已付款，请忽略本短信" in renderer.render("due_day", "sms", "zh-CN", context("zh-CN")).text
    assert "If you have already paid, please ignore" in renderer.render("due_day", "sms", "en-US",
                                                                         context("en-US")).text


def test_overdue_messages_state_the_days_past_due() -> None:
    message = Renderer().render("overdue_early", "email", "zh-CN", context("zh-CN", "overdue_early", date(2026, 12, 4)))
    assert "已逾期 3 天" in message.subject


def test_html_is_escaped_and_text_is_not() -> None:
    message = Renderer().render("due_day", "email", "en-US", context("en-US", debtor__name="<b>Tom & Co</b>"))
    assert "Dear <b>Tom & Co</b>," in message.text
    assert "&lt;b&gt;Tom &amp; Co&lt;/b&gt;" in message.html and "<b>Tom" not in message.html


def test_an_undefined_variable_fails_with_template_line_and_name(own_templates: Path) -> None:
    path = own_templates / "en-US" / "due_day.sms.j2"
    path.write_text("Hello {{ debtor.name }},\nyou owe {{ invoice.balance_left }}.\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        Renderer(own_templates).render("due_day", "sms", "en-US", context("en-US"))
    assert caught.value.name == "en-US/due_day.sms.j2" and caught.value.line == 2
    assert "balance_left" in caught.value.message
    assert str(caught.value).startswith("en-US/due_day.sms.j2:2: undefined variable")


def test_an_undefined_name_is_said_as_written_with_the_closest_that_exists(own_templates: Path) -> None:
    """Not Jinja's "'dict object' has no attribute 'nmae'": the template, the line, the
    variable as the operator wrote it, and the name they probably meant."""
    path = own_templates / "en-US" / "due_day.sms.j2"
    path.write_text("Hi,\n{{ debtor.nmae }} owes.\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        Renderer(own_templates).render("due_day", "sms", "en-US", context("en-US"))
    assert str(caught.value) == ("en-US/due_day.sms.j2:2: undefined variable: debtor.nmae is not defined; "
                                 "did you mean debtor.name?")
    path.write_text("{{ invoise.number }}\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        Renderer(own_templates).render("due_day", "sms", "en-US", context("en-US"))
    assert str(caught.value) == ("en-US/due_day.sms.j2:1: undefined variable: invoise is not defined; "
                                 "did you mean invoice?")


def test_the_sandbox_refuses_python_internals(own_templates: Path) -> None:
    (own_templates / "en-US" / "due_day.voice.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match="en-US/due_day.voice.j2"):
        Renderer(own_templates).render("due_day", "voice", "en-US", context("en-US"))


def test_a_version_is_the_sha256_of_the_source_and_edits_are_picked_up_live(own_templates: Path) -> None:
    renderer = Renderer(own_templates)
    path = own_templates / "zh-CN" / "due_day.voice.j2"
    first = renderer.render("due_day", "voice", "zh-CN", context())
    assert first.version == hashlib.sha256(path.read_bytes()).hexdigest()
    assert first.templates[0].source == path.read_text(encoding="utf-8")
    path.write_text("您好，{{ debtor.name }}，发票{{ invoice.number }}今天到期，"
                    "金额{{ invoice.amount_due|money(invoice.currency) }}。")
    later = path.stat().st_mtime + 5
    os.utime(path, (later, later))
    second = renderer.render("due_day", "voice", "zh-CN", context())
    assert second.text == "您好，张伟，发票2026-0042今天到期，金额¥12,800.00。"
    assert second.version != first.version
    assert second.version == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_email_records_its_layout_too() -> None:
    message = Renderer().render("due_day", "email", "en-US", context("en-US"))
    assert [t.name for t in message.templates] == ["en-US/due_day.email.j2", "email.html.j2"]


def test_the_opt_out_line_is_required_when_asked_for(own_templates: Path) -> None:
    renderer = Renderer(own_templates)
    line = opt_out_line("zh-CN", "sms")
    assert line == "回复TD退订"
    assert renderer.render("due_day", "sms", "zh-CN", context(opt_out=line)).text.endswith("回复TD退订")
    email_line = opt_out_line("en-US", "email", "https://pay.example.com/u/tok")
    assert email_line in renderer.render("due_day", "email", "en-US", context("en-US", opt_out=email_line)).text
    (own_templates / "zh-CN" / "due_day.sms.j2").write_text("【{{ sender.name }}】发票{{ invoice.number }}今日到期。")
    with pytest.raises(TemplateError, match="opt-out line is missing"):
        renderer.render("due_day", "sms", "zh-CN", context(opt_out=line))


def test_locales_fall_back_to_the_same_language_then_the_default() -> None:
    renderer = Renderer()
    assert renderer.locale_for("en-GB") == "en-US"
    assert renderer.locale_for("zh-TW") == "zh-CN"
    assert renderer.locale_for("fr-FR") == "en-US"
    assert renderer.render("due_day", "sms", "en-GB", context("en-GB")).template == "en-US/due_day.sms.j2"


def test_a_missing_template_is_a_template_error(own_templates: Path) -> None:
    (own_templates / "en-US" / "due_day.voice.j2").unlink()
    with pytest.raises(TemplateError, match="en-US/due_day.voice.j2: no such template"):
        Renderer(own_templates).render("due_day", "voice", "en-US", context("en-US"))
