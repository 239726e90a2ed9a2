"""`dunning templates check` finds what an operator's edit broke, before a debtor sees it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from worker.jobs.samples import sample_jobs
from worker.messages.checks import check_templates
from worker.messages.render import Renderer
from worker.settings import SHIPPED_DIR, Sender

STAGES = ["pre_due_7", "pre_due_3", "due_day", "overdue_early", "overdue_late"]


@pytest.fixture()
def own(tmp_path: Path) -> Path:
    shutil.copytree(SHIPPED_DIR, tmp_path / "t")
    return tmp_path / "t"


def findings(directory: Path) -> list[str]:
    return [str(f) for f in check_templates(Renderer(directory), STAGES, sample_jobs(), Sender())]


def test_the_shipped_templates_pass() -> None:
    assert findings(SHIPPED_DIR) == []


def test_each_rule_is_enforced(own: Path) -> None:
    (own / "zh-CN" / "due_day.sms.j2").write_text("【{{ sender.name }}】再不付款将上报法院。{{ opt_out or '' }}")
    (own / "zh-CN" / "pre_due_3.sms.j2").write_text("{{ '提醒' * 400 }}{{ opt_out or '' }}")
    (own / "zh-CN" / "pre_due_7.sms.j2").write_text("{{ '提醒' * 70 }}{{ opt_out or '' }}")
    (own / "en-US" / "due_day.sms.j2").write_text("Invoice {{ invoice.number }} is due today.")
    (own / "en-US" / "pre_due_7.email.j2").write_text("{% block subject %} {% endblock %}"
                                                      "{% block text %}x{% endblock %}")
    (own / "en-US" / "overdue_late.voice.j2").write_text("Call us {% if %}")
    (own / "en-US" / "overdue_early.voice.j2").write_text("Owed: {{ invoice.amount }}")
    found = "\n".join(findings(own))
    assert "error: zh-CN/due_day.sms.j2: forbidden phrase '法院'" in found
    assert "error: zh-CN/pre_due_3.sms.j2: 13 SMS segments (UCS-2); at most 10" in found
    assert "warning: zh-CN/pre_due_7.sms.j2: 3 SMS segments (UCS-2)" in found
    assert "error: en-US/due_day.sms.j2: the opt-out line is missing" in found
    assert "error: en-US/pre_due_7.email.j2: the email subject is empty" in found
    assert "error: en-US/overdue_late.voice.j2:1: " in found
    assert ("error: en-US/overdue_early.voice.j2:1: undefined variable: invoice.amount is not defined; "
            "did you mean invoice.amount_due?") in found


def test_every_language_s_phrases_apply_to_every_template(own: Path) -> None:
    """A Chinese threat in an English template (and the reverse) is still a threat: the
    debtor reads it whatever the template's locale."""
    (own / "en-US" / "due_day.sms.j2").write_text("Invoice {{ invoice.number }}: 公安 will visit. {{ opt_out or '' }}")
    (own / "zh-CN" / "pre_due_3.voice.j2").write_text("发票 {{ invoice.number }}，police 将上门。")
    found = "\n".join(findings(own))
    assert "error: en-US/due_day.sms.j2: forbidden phrase '公安'" in found
    assert "error: zh-CN/pre_due_3.voice.j2: forbidden phrase 'police'" in found


def test_the_command_exits_1_on_errors(own: Path) -> None:
    (own / "en-US" / "due_day.voice.j2").write_text("You will go to jail. {{ invoice.number }}")
    dunning = str(Path(sys.executable).parent / "dunning")
    bad = subprocess.run([dunning, "templates", "check", "--dir", str(own)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "forbidden phrase 'jail'" in bad.stderr
    # No contact log yet: the folder the first worker will import (the shipped one).
    nowhere = {**os.environ, "DUNNING_DATABASE_URL": f"sqlite:///{own.parent}/none/dunning.db"}
    good = subprocess.run([dunning, "templates", "check"], capture_output=True, text=True, timeout=60, env=nowhere)
    assert good.returncode == 0 and "0 error(s)" in good.stdout and str(SHIPPED_DIR) in good.stdout


def test_preview_prints_the_message(tmp_path: Path) -> None:
    import json

    from conftest import SAMPLE
    job = tmp_path / "job.json"
    job.write_text(json.dumps(SAMPLE, ensure_ascii=False), encoding="utf-8")
    dunning = str(Path(sys.executable).parent / "dunning")
    sms = subprocess.run([dunning, "templates", "preview", "due_day", "--job", str(job), "--channel", "sms",
                          "--now", "2026-12-01T09:00:00+08:00"], capture_output=True, text=True, timeout=60)
    assert sms.returncode == 0, sms.stderr
    assert "template: zh-CN/due_day.sms.j2" in sms.stdout and "segments: 2 (UCS-2" in sms.stdout
    assert "发票2026-0042应付¥12,800.00今日到期" in sms.stdout
    email = subprocess.run([dunning, "templates", "preview", "overdue_early", "--job", str(job), "--locale", "en-US",
                            "--now", "2026-12-03T09:00:00+08:00"], capture_output=True, text=True, timeout=60)
    assert "subject: Overdue: invoice 2026-0042, 2 days past due" in email.stdout
    assert "--- HTML (email.html.j2) ---" in email.stdout
    missing = subprocess.run([dunning, "templates", "preview", "final_notice", "--job", str(job)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "final_notice.email.j2: no such template" in missing.stderr
