"""Templates in the contact log: every worker host renders the same published version;
a version goes live once another person approves it (four eyes); a worker notices a
new one without a restart; `templates export|import` keep a folder (git) workflow."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_cli import dunning

from worker.contact_log import ContactLog
from worker.messages.library import Library, TemplateProblem, VersionState
from worker.messages.render import Renderer
from worker.settings import SHIPPED_DIR, Settings

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
SMS = "en-US/due_day.sms.j2"


def test_the_folder_is_imported_once_and_the_log_is_the_truth_after(log: ContactLog, tmp_path: Path) -> None:
    library = Library(log)
    imported = library.import_folder(Settings().template_dir, NOW)
    assert SMS in imported and "email.html.j2" in imported and len(imported) == len(list(SHIPPED_DIR.rglob("*.j2")))
    assert library.live_templates()[SMS] == (SHIPPED_DIR / SMS).read_text(encoding="utf-8")
    assert library.import_folder(Settings().template_dir, NOW) == [], "names with a version are left alone"
    [event] = [r for r in log.history() if r["kind"] == "template"]
    assert event["status"] == "imported" and SMS in event["detail"]["names"]


def test_four_eyes_a_version_goes_live_when_another_person_approves_it(log: ContactLog) -> None:
    library = Library(log)
    library.import_folder(Settings().template_dir, NOW)
    published = library.published()
    renderer = Renderer(published)
    before = library.template_generation()
    draft = library.save_template(SMS, "New wording for {{ invoice.number }}. {{ opt_out }}", "olga", NOW)
    assert draft.state == VersionState.DRAFT and library.live_templates()[SMS] != draft.source
    pending = library.publish_template(draft.id, "olga", NOW, approvals=2)
    assert pending.state == VersionState.PENDING and library.template_generation() == before, "not live yet"
    with pytest.raises(TemplateProblem, match="another person must approve it"):
        library.approve_template(draft.id, "olga", NOW)
    live = library.approve_template(draft.id, "pavel", NOW + timedelta(minutes=5))
    assert live.state == VersionState.LIVE and live.approved_by == "pavel" and library.template_generation() > before
    assert library.live_templates()[SMS] == draft.source
    versions = library.template_versions(SMS)
    assert [v.state for v in versions] == [VersionState.LIVE, VersionState.RETIRED]
    time.sleep(1.1)  # a worker asks at most once a second
    assert renderer.templates.get(SMS).version == draft.version  # type: ignore[union-attr]
    events = [(r["status"], r["detail"]["by"]) for r in log.history() if r["kind"] == "template"][1:]
    assert events == [("published", "olga"), ("approved", "pavel")]
    assert log.verify().intact


def test_one_approval_publishes_at_once_and_a_newer_version_withdraws_a_waiting_one(log: ContactLog) -> None:
    library = Library(log)
    library.import_folder(Settings().template_dir, NOW)
    first = library.publish_template(library.save_template(SMS, "One {{ opt_out }}", "olga", NOW).id, "olga", NOW, 2)
    second = library.publish_template(library.save_template(SMS, "Two {{ opt_out }}", "olga", NOW).id, "olga", NOW, 1)
    assert second.state == VersionState.LIVE and library.template_version(first.id).state == VersionState.WITHDRAWN  # type: ignore[union-attr]
    with pytest.raises(TemplateProblem, match="only a draft can be published"):
        library.publish_template(second.id, "olga", NOW, 1)
    same = library.save_template(SMS, "Two {{ opt_out }}", "olga", NOW)
    with pytest.raises(TemplateProblem, match="same as the live version"):
        library.publish_template(same.id, "olga", NOW, 1)
    with pytest.raises(TemplateProblem, match="LOCALE/STAGE.CHANNEL.j2 expected"):
        library.save_template("../etc/passwd", "x", "olga", NOW)


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
    library = Library(log)
    assert [v.state for v in library.template_versions(SMS)][:2] == [VersionState.PENDING, VersionState.LIVE]
    voice = library.template_versions("en-US/due_day.voice.j2")
    assert [v.state for v in voice][:2] == [VersionState.DRAFT, VersionState.LIVE]
    # `check` reads what the workers render: the published versions.
    checked = dunning("templates", "check", env=env)
    assert checked.returncode == 0 and "published in the contact log" in checked.stdout
    log.engine.dispose()
