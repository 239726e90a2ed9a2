"""The contact log on real SQLite and PostgreSQL: claims, append-only events, sources, dead letters."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from sealed import MASTER_KEY
from sqlalchemy import inspect, text

from worker.contact_log import Claim, ContactLog
from worker.contact_log.kinds import Event, Kind
from worker.db import migrations
from worker.jobs.book import JobBook
from worker.messages.sources import TemplateSource

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def claim(key: str = "INV-1/due_day#sms", channel: str = "sms") -> Claim:
    return Claim(key, "INV-1/due_day", "INV-1", "ACME-001", channel, "+8613800138000", "due_day",
                 "zh-CN/due_day.sms.j2", "ab" * 32, ("stage due_day: sms then email",), ("W-BIZ", "W-LEGAL"),
                 ("Asia/Shanghai",))


def test_the_schema_is_migrated_with_its_indexes(log: ContactLog) -> None:
    inspector = inspect(log.engine)
    assert {"deliveries", "events", "template_versions", "dead_letters", "jobs", "api_keys", "idempotency",
            "webhooks", "webhook_endpoints", "users", "sessions", "sign_in_failures", "data_keys", "templates",
            "chains", "alembic_version"} <= set(inspector.get_table_names())
    assert {"ix_events_provider_id", "ix_events_account_time", "ix_events_address_index", "ix_events_account_kind",
            "ux_events_chain_position"} <= {
        i["name"] for i in inspector.get_indexes("events")}
    with log.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0014" == migrations.head()
    assert {"queued_at", "parent_id"} <= {c["name"] for c in inspector.get_columns("jobs")}


def test_a_key_is_claimed_once_and_a_second_claim_sees_the_first(log: ContactLog) -> None:
    first = log.claim(claim(), NOW)
    assert first.status == "claimed"
    log.record(Event(Kind.DELIVERY, "sent", delivery_id=first.id, provider="twilio", provider_message_id="SM123"),
                     NOW + timedelta(seconds=1))
    again = log.claim(claim(), NOW + timedelta(minutes=5))
    assert (again.id, again.status, again.claimed_at) == (first.id, "sent", NOW)


def test_concurrent_claims_of_one_key_yield_one_delivery(log: ContactLog) -> None:
    results = []

    def worker() -> None:
        results.append(log.claim(claim("RACE#email", "email"), NOW).id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    rows = [r for r in log.history() if r["delivery_key"] == "RACE#email"]
    assert [r["status"] for r in rows] == ["claimed"]


def test_history_is_append_only_and_keeps_every_status(log: ContactLog) -> None:
    delivery = log.claim(claim(), NOW)
    for status, minutes in (("sent", 1), ("delivered", 3), ("sent", 2)):
        log.record(Event(Kind.CALLBACK, status, delivery_id=delivery.id, provider="twilio",
                         provider_message_id="SM123", occurred_at=NOW + timedelta(minutes=minutes)),
                   NOW + timedelta(minutes=10))
    rows = list(log.history(account="ACME-001"))
    assert [r["status"] for r in rows] == ["claimed", "sent", "delivered", "sent"]
    assert all(r["invoice_id"] == "INV-1" and r["recipient"] == "+8613800138000" for r in rows)
    assert rows[2]["occurred_at"] == NOW + timedelta(minutes=3) and rows[2]["occurred_at"].tzinfo is not None
    assert list(log.history(invoice="INV-2")) == []
    assert [r["status"] for r in log.history(since=NOW + timedelta(minutes=2))] == ["delivered", "sent"]


def test_decisions_are_logged_with_reasons_and_rules(log: ContactLog) -> None:
    log.record(Event(Kind.DECISION, "defer", job_id="J", invoice_id="INV-9", account_id="A",
                     detail={"until": "2026-12-07T09:00:00+08:00", "reasons": ["Saturday"], "rules": ["W-BIZ"]}), NOW)
    [row] = list(log.history(invoice="INV-9"))
    assert row["kind"] == "decision" and row["detail"]["rules"] == ["W-BIZ"]


def test_template_sources_are_kept_once_per_version(log: ContactLog) -> None:
    source = TemplateSource("zh-CN/due_day.sms.j2", "cd" * 32, "【{{ sender.name }}】…")
    log.keep_templates([source, source], NOW)
    log.keep_templates([source], NOW + timedelta(days=1))
    assert log.template_source("cd" * 32) == "【{{ sender.name }}】…"
    assert log.template_source("ef" * 32) is None


def test_dead_letters_keep_the_payload_and_reason(log: ContactLog) -> None:
    log.dead_letter("intake line 3", "debtor.phone: '+86 138' is not a valid phone number", '{"job_id": "x"}', NOW,
                    job_id="x")
    [letter] = log.dead_letters()
    assert letter["payload"] == '{"job_id": "x"}' and letter["origin"] == "intake line 3"
    assert letter["received_at"] == NOW


def test_naive_datetimes_are_refused(log: ContactLog) -> None:
    with pytest.raises(Exception, match="aware"):
        log.record(Event(Kind.DECISION, "skip", job_id=str(uuid4())), datetime(2026, 12, 1, 9, 0))


def test_export_masks_personal_data_unless_asked(tmp_path: Path) -> None:
    import csv
    import json
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/log.db"
    log = ContactLog.open(url, MASTER_KEY).migrate()
    delivery = log.claim(claim(), NOW)
    log.record(Event(Kind.DELIVERY, "failed", delivery_id=delivery.id, provider="twilio", error_code="21211",
                     error_text="The 'To' number is not a valid phone number."), NOW)
    dunning = str(Path(sys.executable).parent / "dunning")
    env = {**os.environ, "DUNNING_DATABASE_URL": url}

    def run(*args: str) -> str:
        result = subprocess.run([dunning, "log", *args], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    masked = [json.loads(line) for line in run("export").splitlines()]
    assert [r["status"] for r in masked] == ["claimed", "failed"]
    assert masked[1]["recipient"] == "+86138****8000" and masked[1]["error_code"] == "21211"
    assert masked[0]["rules"] == ["W-BIZ", "W-LEGAL"]
    assert "+8613800138000" not in run("export") + run("export", "--format", "csv") + run("show")
    full = [json.loads(line) for line in run("export", "--unmasked").splitlines()]
    assert full[0]["recipient"] == "+8613800138000"
    rows = list(csv.DictReader(run("export", "--format", "csv").splitlines()))
    assert rows[1]["status"] == "failed" and json.loads(rows[0]["zones"]) == ["Asia/Shanghai"]
    assert "21211" in run("show", "--invoice", "INV-1") and "21211" not in run("show", "--invoice", "INV-2")


def test_facts_come_from_the_log_for_the_whole_debtor(log: ContactLog) -> None:
    from dataclasses import replace

    call = replace(claim("INV-2/overdue_early#voice", "voice"), job_id="INV-2/overdue_early", invoice_id="INV-2",
                   stage="overdue_early")
    delivered = log.claim(call, NOW)
    log.record(Event(Kind.CALLBACK, "no-answer", delivery_id=delivered.id), NOW)
    text_message = log.claim(claim(), NOW + timedelta(minutes=1))
    log.record(Event(Kind.DELIVERY, "failed", delivery_id=text_message.id, error_code="21610"), NOW)
    stranger = replace(claim("OTHER#sms"), account_id="SOMEONE-ELSE")
    log.claim(stranger, NOW)
    old = replace(claim("OLD#email", "email"), job_id="OLD")
    log.claim(old, NOW - timedelta(days=60))
    log.record(Event(Kind.INVOICE, "promised", invoice_id="INV-1", account_id="ACME-001",
                     detail={"until": "2026-12-05"}), NOW)
    log.suppress("ACME-001", "+8613900139000", "sms", "21211 invalid number", NOW, code="21211")
    log.record(Event(Kind.SUPPRESSION, "suppressed", account_id="ACME-001", detail={"channel": "voice"}), NOW)

    facts = log.facts_for("ACME-001", "INV-1", "INV-1/due_day", NOW + timedelta(hours=1))
    assert sorted((a.invoice_id, a.channel, a.outcome) for a in facts.attempts) == [
        ("INV-1", "sms", "failed"), ("INV-2", "voice", "no-answer")]
    assert facts.promised_until is not None and str(facts.promised_until) == "2026-12-05"
    assert facts.invalid_addresses == {"+8613900139000"} and facts.suppressed_addresses == set()
    assert facts.suppressed_channels == {"voice"} and facts.failed_channels == {"sms"}, "sms failed for this job"
    assert not facts.paid
    other_job = log.facts_for("ACME-001", "INV-1", "INV-1/overdue_early", NOW + timedelta(hours=1))
    assert other_job.suppressed_channels == {"voice"} and other_job.failed_channels == set()

    log.record(Event(Kind.INVOICE, "paid", invoice_id="INV-1", account_id="ACME-001"), NOW)
    log.record(Event(Kind.INVOICE, "disputed", invoice_id="INV-2", account_id="ACME-001"), NOW)
    log.record(Event(Kind.ACCOUNT, "ceased", account_id="ACME-001"), NOW)
    facts = log.facts_for("ACME-001", "INV-1", "INV-1/due_day", NOW + timedelta(hours=1))
    assert facts.paid and not facts.disputed and facts.ceased


def test_a_job_id_is_accepted_once(log: ContactLog) -> None:
    assert JobBook(log).accept_job("J-1", "INV-1", "A", "{}", NOW)
    assert not JobBook(log).accept_job("J-1", "INV-1", "A", "{}", NOW + timedelta(seconds=1))


def test_log_show_in_an_80_column_terminal_keeps_every_id_whole(tmp_path: Path) -> None:
    """Columns are chosen by width: the least useful left out (and said), never an id cut."""
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/log.db"
    log = ContactLog.open(url, MASTER_KEY).migrate()
    invoices = ["INV-2026-0042-LONG-ID", "INV-2026-0043-LONG-ID"]
    for invoice in invoices:
        log.record(Event(Kind.DECISION, "defer", job_id=f"{invoice}/due_day", invoice_id=invoice, account_id="ACME",
                         detail={"reasons": ["Saturday: the next business day, within the contact window"]}), NOW)
    dunning = str(Path(sys.executable).parent / "dunning")
    for columns in (80, 200):
        shown = subprocess.run([dunning, "log", "show"], capture_output=True, text=True, timeout=60,
                               env={**os.environ, "DUNNING_DATABASE_URL": url, "COLUMNS": str(columns)})
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert max(len(line) for line in lines) <= columns, shown.stdout
        for invoice in invoices:
            assert any(invoice in line for line in lines), shown.stdout
        assert "…" not in shown.stdout
        assert ("left out for the terminal's width" in shown.stdout) == (columns == 80)


def test_postgresql_plans_each_statement_for_its_values(log: ContactLog) -> None:
    """A generic plan kept from when the log was empty walked every event for each
    claim's check for news (issue 25: 4.2 ms a claim at 6,000 reminders): the log's
    connections plan every statement for the values it is given (`schema.open_engine`)."""
    if log.engine.dialect.name != "postgresql":
        pytest.skip("SQLite plans each statement as it is prepared")
    for _ in range(8):  # past psycopg's threshold for preparing a statement on the server
        with log.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
