"""The `dunning` command as people run it: real process, real files, exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SAMPLE, job_data
from sealed import MASTER_KEY

DUNNING = str(Path(sys.executable).parent / "dunning")


def dunning(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([DUNNING, *args], input=stdin.decode("utf-8", "surrogateescape") if stdin else "",
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_decide_prints_the_contract_json(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps(SAMPLE, ensure_ascii=False), encoding="utf-8")
    result = dunning("decide", str(job), "--now", "2026-12-01T09:00:00+08:00")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision == {
        "action": "send", "channel": "email", "stage": "due_day", "template": "due_day",
        "at": "2026-12-01T09:00:00+08:00", "window_end": "2026-12-01T11:30:00+08:00",
        "reasons": ["stage due_day: email then sms (email preferred)"], "rules": ["W-BIZ", "W-LEGAL"],
        "zones": ["Asia/Shanghai"]}


def test_decide_with_facts_and_a_weekend(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps(SAMPLE), encoding="utf-8")
    saturday = dunning("decide", str(job), "--now", "2026-11-28T10:00:00+08:00")
    assert json.loads(saturday.stdout)["until"] == "2026-12-01T09:00:00+08:00"
    assert json.loads(saturday.stdout)["reasons"][0] == "Saturday"
    facts = tmp_path / "facts.json"
    facts.write_text('{"paid": true}', encoding="utf-8")
    paid = dunning("decide", str(job), "--now", "2026-12-01T09:00:00+08:00", "--facts", str(facts))
    assert json.loads(paid.stdout) == {"action": "skip", "reasons": ["invoice paid"], "rules": ["S-PAID"],
                                       "zones": ["Asia/Shanghai"]}


def test_decide_rejects_a_naive_now_and_bad_facts(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps(SAMPLE), encoding="utf-8")
    naive = dunning("decide", str(job), "--now", "2026-12-01T09:00")
    assert naive.returncode == 2 and "--now: '2026-12-01T09:00' is not an ISO 8601 time with an offset" in naive.stderr
    facts = tmp_path / "facts.json"
    facts.write_text('{"paid": "yes", "attempts": [{"channel": "fax"}]}', encoding="utf-8")
    bad = dunning("decide", str(job), "--now", "2026-12-01T09:00:00+08:00", "--facts", str(facts))
    assert bad.returncode == 1
    assert "paid: expected true or false, got 'yes'" in bad.stderr
    assert "attempts.0.channel: 'fax' is not one of 'email', 'sms' or 'voice'" in bad.stderr


def test_decide_reads_json_lines_from_stdin_and_labels_each_decision() -> None:
    lines = "\n".join(json.dumps(job_data(job_id=f"J{i}")) for i in range(3)).encode()
    result = dunning("decide", "-", "--now", "2026-12-01T09:00:00+08:00", stdin=lines)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["job_id"] for line in result.stdout.splitlines()] == ["J0", "J1", "J2"]


def test_validate_reports_every_record_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"\n".join([json.dumps(SAMPLE).encode(), json.dumps(job_data(debtor__phone="+86 138")).encode(),
                                 b"{broken", b'{"job_id": "\xff"}']))
    result = dunning("validate", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "line 1  INV-2026-0042/due_day  ok"
    assert lines[1] == "line 2  INV-2026-0042/due_day  1 error(s)"
    assert lines[2] == "    debtor.phone: '+86 138' is not a valid phone number (E.164 expected, e.g. +8613800138000)"
    assert lines[3].startswith("line 3  (no job_id)  1 error(s)")
    assert "not valid JSON" in lines[4]
    assert "not UTF-8 text (byte 0xff" in lines[6]
    assert "4 job(s): 1 valid, 3 invalid" in result.stderr


def test_validate_json_output_and_success(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps([SAMPLE, job_data(job_id="B")]), encoding="utf-8")
    result = dunning("validate", str(path), "--json")
    assert result.returncode == 0
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"where": "item 1", "job_id": "INV-2026-0042/due_day", "ok": True, "errors": []},
        {"where": "item 2", "job_id": "B", "ok": True, "errors": []}]


def test_a_missing_file_is_an_error_not_a_traceback() -> None:
    result = dunning("validate", "/nonexistent/jobs.jsonl")
    assert result.returncode == 1 and "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_profiles_check_locates_problems_in_the_operator_directory(tmp_path: Path) -> None:
    (tmp_path / "acme.toml").write_text('description = "acme"\nextends = ["default"]\nhonour_cease = "yes"\n')
    result = dunning("profiles", "check", env={"DUNNING_PROFILE_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert f"{tmp_path / 'acme.toml'}:3: honour_cease: Input should be a valid boolean" in result.stderr
    ok = dunning("profiles", "check")
    assert ok.returncode == 0 and "10 profile(s) resolve" in ok.stdout


def test_a_broken_operator_profile_stops_decide_with_a_pointer(tmp_path: Path) -> None:
    (tmp_path / "acme.toml").write_text('description = "acme"\nextends = ["nowhere"]\n')
    job = tmp_path / "job.json"
    job.write_text(json.dumps(SAMPLE), encoding="utf-8")
    result = dunning("decide", str(job), "--now", "2026-12-01T09:00:00+08:00",
                     env={"DUNNING_PROFILE_DIR": str(tmp_path)})
    assert result.returncode == 1 and "dunning profiles check" in result.stderr
    assert "acme.toml:2: extends: no profile named 'nowhere'" in result.stderr


def test_demo_runs_the_whole_pipeline(tmp_path: Path) -> None:
    import subprocess as sp

    result = sp.run([DUNNING, "demo"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                    env={**__import__("os").environ, "COLUMNS": "220"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in ("invoice paid", "escalation opened", "promised to pay by 2026-12-04", "21211",
                     "supervisor notified", "emails: 5 in", "texts:  4 and calls: 4"):
        assert expected in out, expected
    assert len(list((tmp_path / "var/demo/mail").glob("*.eml"))) == 5
    leftovers = sp.run(["pgrep", "-f", str(tmp_path / "var/demo")], capture_output=True, text=True).stdout
    assert leftovers == "", "everything the demo started is stopped"
    _the_demo_is_seen_in_the_console_as_it_says(out, tmp_path)


def _the_demo_is_seen_in_the_console_as_it_says(said: str, where: Path) -> None:
    """A newcomer follows the demo's last lines: the shell's settings, a person, `serve`,
    and the console shows the demo's log."""
    import os
    import re
    import subprocess as sp
    import time

    import requests

    from worker.local.ports import free_port
    exported = re.search(r"^  export (.+)$", said, re.M)
    assert exported is not None and "dunning users add demo --role compliance --password-stdin" in said
    assert ".venv/bin/dunning serve" in said and "http://127.0.0.1:8000/console/" in said
    env = dict(os.environ)
    for name, value in re.findall(r"(DUNNING_\w+)=(\$\(cat [^)]+\)|\S+)", exported.group(1)):
        read = re.fullmatch(r"\$\(cat (.+)\)", value)
        env[name] = (where / read.group(1)).read_text().strip() if read else value
    added = sp.run([DUNNING, "users", "add", "demo", "--role", "compliance", "--password-stdin"],
                   input="demo password 1\n", capture_output=True, text=True, timeout=60, cwd=where, env=env)
    assert added.returncode == 0, added.stderr
    port = free_port()
    server = sp.Popen([DUNNING, "serve", "--port", str(port)], cwd=where, env=env, stdout=sp.DEVNULL, stderr=sp.PIPE)
    try:
        url, browser = f"http://127.0.0.1:{port}", requests.Session()
        for _ in range(100):
            try:
                form = browser.get(f"{url}/console/sign-in", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        browser.post(f"{url}/console/sign-in", data={"username": "demo", "password": "demo password 1",
                                                     "csrf": token.group(1)}, timeout=10)
        found = browser.get(f"{url}/console/search", params={"q": "ACME-001"}, timeout=10)
        assert found.status_code == 200 and "/console/invoices/" in found.text, found.text[:2000]
    finally:
        server.terminate()
        server.wait(timeout=20)
    logged = server.stderr.read().decode() if server.stderr else ""
    # The demo's Redis has stopped: the Schedule's read-ahead says so, and the console served on.
    assert "[dunning.serve] [INFO] the Schedule page's jobs were not read ahead (ConnectionError)" in logged, logged
    assert "Traceback" not in logged, logged


def test_every_command_has_help() -> None:
    for command in (["--help"], ["validate", "--help"], ["decide", "--help"], ["demo", "--help"],
                    ["profiles", "check", "--help"], ["profiles", "list", "--help"], ["paid", "--help"],
                    ["dispute", "--help"], ["promise", "--help"], ["optout", "--help"], ["cease", "--help"],
                    ["writeoff", "--help"]):
        result = dunning(*command)
        assert result.returncode == 0 and "Usage" in result.stdout, command


def test_events_from_the_command_line_are_recorded_and_bad_ones_explained(tmp_path: Path, redis_server: object) -> None:
    from worker.contact_log import ContactLog
    from worker.jobs.book import JobBook

    env = {"DUNNING_DATABASE_URL": f"sqlite:///{tmp_path}/dunning.db",
           "DUNNING_REDIS_URL": redis_server.url}  # type: ignore[attr-defined]
    assert dunning("migrate", env=env).returncode == 0
    known = ContactLog.open(env["DUNNING_DATABASE_URL"], MASTER_KEY)
    for invoice in ("INV-7", "INV-8"):
        JobBook(known).accept_job(f"{invoice}/due_day", invoice, "ACME", "{}", datetime(2026, 12, 1, tzinfo=UTC))
    known.engine.dispose()
    typo = dunning("paid", "NOPE-9", env=env)
    assert typo.returncode == 1 and "invoice NOPE-9: the contact log has no job for this invoice" in typo.stderr
    paid = dunning("paid", "INV-7", "--amount", "300.00", "--by", "alice", env=env)
    assert paid.returncode == 0 and "INV-7: payment of 300.00 recorded" in paid.stdout, paid.stderr
    assert dunning("promise", "INV-7", "--until", "2026-12-24", env=env).returncode == 0
    assert dunning("optout", "--account", "ACME", "--channel", "sms", env=env).returncode == 0
    assert dunning("cease", "ACME", "--note", "letter", env=env).returncode == 0
    written_off = dunning("writeoff", "INV-8", "--note", "insolvent", env=env)
    assert written_off.returncode == 0 and "INV-8: written off" in written_off.stdout, written_off.stderr
    bad = dunning("paid", "INV-7", "--amount", "3OO", env=env)
    assert bad.returncode == 1 and 'amount: must be a decimal string like "1200.00", got \'3OO\'' in bad.stderr
    assert "Traceback" not in bad.stderr
    assert dunning("optout", "12345", env=env).returncode == 1
    assert dunning("optout", env=env).returncode == 2
    assert dunning("promise", "INV-7", "--until", "next week", env=env).returncode == 1
    rows = list(ContactLog.open(env["DUNNING_DATABASE_URL"], MASTER_KEY).migrate().history())
    assert [(r["kind"], r["status"]) for r in rows] == [("invoice", "payment"), ("invoice", "promised"),
                                                        ("suppression", "suppressed"), ("account", "ceased"),
                                                        ("invoice", "written-off")]
    assert rows[0]["detail"] == {"amount": "300.00", "by": "alice"} and rows[1]["detail"]["by"].startswith("cli:")


def test_only_migrating_writes_the_schema(tmp_path: Path, redis_server: object) -> None:
    """Opening the log never migrates it: a command, or the Python API, on a database that
    is behind says to run `dunning migrate` (exit 2) and leaves the schema alone."""
    import sqlalchemy

    import worker
    from worker.errors import SchemaError
    from worker.settings import Settings

    url = f"sqlite:///{tmp_path}/dunning.db"
    env = {"DUNNING_DATABASE_URL": url, "DUNNING_REDIS_URL": redis_server.url}  # type: ignore[attr-defined]

    def tables() -> set[str]:
        engine = sqlalchemy.create_engine(url)
        try:
            return set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()

    for command in (("log", "verify"), ("paid", "INV-1"), ("escalations",)):
        result = dunning(*command, env=env)
        assert result.returncode == 2 and "dunning migrate" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
    with pytest.raises(SchemaError, match="dunning migrate"):
        worker.paid("INV-1", settings=Settings.from_env(env))
    assert tables() == set(), "nothing but `dunning migrate` creates the schema"
    migrated = dunning("migrate", env=env)
    assert migrated.returncode == 0 and "up to date" in migrated.stdout, migrated.stderr
    assert {"events", "deliveries", "jobs", "alembic_version"} <= tables()
    assert dunning("log", "verify", env=env).returncode == 0
    assert dunning("migrate", env=env).returncode == 0, "migrating again is safe"


def test_help_is_grouped_and_loads_none_of_the_application() -> None:
    """`dunning --help` answers at once: it loads no database, template, HTTP or queue
    library (bench/cli.py times it), and lists the commands by what a person is doing."""
    probe = ("import sys\nsys.argv = ['dunning', '--help']\nfrom worker.cli import main\ntry:\n    main()\n"
             "except SystemExit:\n    pass\nheavy = {'sqlalchemy', 'jinja2', 'babel', 'pydantic', 'dramatiq', 'redis',"
             " 'fastapi', 'argon2', 'cryptography', 'alembic', 'schedules'}\n"
             "print('LOADED', sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "LOADED []" in run.stdout, run.stdout[-500:] + run.stderr[-2000:]
    sections = [line for line in run.stdout.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert sections == ["Options:", "Jobs:", "Events from billing and people:", "Running:", "The log and records:",
                        "Templates and profiles:", "People and keys:"], run.stdout
