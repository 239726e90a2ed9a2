"""Templates in the contact log: every worker host renders the same published version;
a version goes live once another person approves it (four eyes); a worker notices a
new one without a restart; `templates export|import` keep a folder (git) workflow."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_cli import dunning

from worker import wiring
from worker.contact_log import ContactLog
from worker.contact_log.templates import State, TemplateProblem
from worker.messages.render import Renderer
from worker.settings import SHIPPED_DIR, Settings

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
SMS = "en-US/due_day.sms.j2"


def test_the_folder_is_imported_once_and_the_log_is_the_truth_after(log: ContactLog, tmp_path: Path) -> None:
    imported = wiring.seed_templates(Settings(), log, NOW)
    assert SMS in imported and "email.html.j2" in imported and len(imported) == len(list(SHIPPED_DIR.rglob("*.j2")))
    assert log.live_templates()[SMS] == (SHIPPED_DIR / SMS).read_text(encoding="utf-8")
    assert wiring.seed_templates(Settings(), log, NOW) == [], "names with a version are left alone"
    [event] = [r for r in log.history() if r["kind"] == "template"]
    assert event["status"] == "imported" and SMS in event["detail"]["names"]


def test_four_eyes_a_version_goes_live_when_another_person_approves_it(log: ContactLog) -> None:
    wiring.seed_templates(Settings(), log, NOW)
    published = wiring.published(log)
    renderer = Renderer(published)
    before = log.template_generation()
    draft = log.save_template(SMS, "New wording for {{ invoice.number }}. {{ opt_out }}", "olga", NOW)
    assert draft.state == State.DRAFT and log.live_templates()[SMS] != draft.source
    pending = log.publish_template(draft.id, "olga", NOW, approvals=2)
    assert pending.state == State.PENDING and log.template_generation() == before, "not live yet"
    with pytest.raises(TemplateProblem, match="another person must approve it"):
        log.approve_template(draft.id, "olga", NOW)
    live = log.approve_template(draft.id, "pavel", NOW + timedelta(minutes=5))
    assert live.state == State.LIVE and live.approved_by == "pavel" and log.template_generation() > before
    assert log.live_templates()[SMS] == draft.source
    versions = log.template_versions(SMS)
    assert [v.state for v in versions] == [State.LIVE, State.RETIRED]
    time.sleep(1.1)  # a worker asks at most once a second
    assert renderer.templates.get(SMS).version == draft.version  # type: ignore[union-attr]
    events = [(r["status"], r["detail"]["by"]) for r in log.history() if r["kind"] == "template"][1:]
    assert events == [("published", "olga"), ("approved", "pavel")]
    assert log.verify().intact


def test_one_approval_publishes_at_once_and_a_newer_version_withdraws_a_waiting_one(log: ContactLog) -> None:
    wiring.seed_templates(Settings(), log, NOW)
    first = log.publish_template(log.save_template(SMS, "One {{ opt_out }}", "olga", NOW).id, "olga", NOW, 2)
    second = log.publish_template(log.save_template(SMS, "Two {{ opt_out }}", "olga", NOW).id, "olga", NOW, 1)
    assert second.state == State.LIVE and log.template_version(first.id).state == State.WITHDRAWN  # type: ignore[union-attr]
    with pytest.raises(TemplateProblem, match="only a draft can be published"):
        log.publish_template(second.id, "olga", NOW, 1)
    same = log.save_template(SMS, "Two {{ opt_out }}", "olga", NOW)
    with pytest.raises(TemplateProblem, match="same as the live version"):
        log.publish_template(same.id, "olga", NOW, 1)
    with pytest.raises(TemplateProblem, match="LOCALE/STAGE.CHANNEL.j2 expected"):
        log.save_template("../etc/passwd", "x", "olga", NOW)


def test_export_then_import_puts_changes_forward_for_approval(tmp_path: Path) -> None:
    env = {"DUNNING_DATABASE_URL": f"sqlite:///{tmp_path}/dunning.db"}
    assert dunning("migrate", env=env).returncode == 0
    folder = tmp_path / "templates"
    nothing = dunning("templates", "import", str(SHIPPED_DIR), "--by", "olga", env=env)
    assert nothing.returncode == 0 and "0 changed template(s)" in nothing.stdout, nothing.stderr
    exported = dunning("templates", "export", str(folder), env=env)
    assert exported.returncode == 0 and (folder / SMS).read_text() == (SHIPPED_DIR / SMS).read_text()
    (folder / SMS).write_text("Invoice {{ invoice.number }} is due today. {% if opt_out %}{{ opt_out }}{% endif %}")
    (folder / "en-US" / "due_day.voice.j2").write_text("Pay {{ invoice.number }} or the police will come.")
    imported = dunning("templates", "import", str(folder), "--by", "olga", env=env)
    assert imported.returncode == 1
    assert f"{SMS}: version #" in imported.stdout and "waiting for another person's approval" in imported.stdout
    assert "forbidden phrase 'police'" in imported.stderr and "kept as draft" in imported.stderr
    log = ContactLog.open(env["DUNNING_DATABASE_URL"])
    assert [v.state for v in log.template_versions(SMS)][:2] == [State.PENDING, State.LIVE]
    assert [v.state for v in log.template_versions("en-US/due_day.voice.j2")][:2] == [State.DRAFT, State.LIVE]
    # `check` reads what the workers render: the published versions.
    checked = dunning("templates", "check", env=env)
    assert checked.returncode == 0 and "published in the contact log" in checked.stdout
    log.engine.dispose()
