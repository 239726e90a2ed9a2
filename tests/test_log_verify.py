"""`dunning log verify`: the contact log's hash chain, on SQLite and PostgreSQL. A log
written the normal way verifies; any change to an event or a delivery, a removed row or
a cut-off end is found and named."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sealed import MASTER_KEY
from sqlalchemy import create_engine, insert, text

from worker.contact_log import Claim, ContactLog
from worker.contact_log.chain import GENESIS, digest, of_account
from worker.contact_log.kinds import Event, Kind
from worker.db.migrations import upgrade
from worker.db.schema import events
from worker.events import Events

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
DUNNING = str(Path(sys.executable).parent / "dunning")


def claim(n: int, channel: str = "sms", recipient: str = "+8613800138000") -> Claim:
    return Claim(f"INV-{n}/due_day#{channel}", f"INV-{n}/due_day", f"INV-{n}", "ACME-001", channel, recipient,
                 "due_day", "zh-CN/due_day.sms.j2", "ab" * 32, ("stage due_day: sms then email",),
                 ("W-BIZ", "W-LEGAL"), ("Asia/Shanghai",))


def fill(log: ContactLog) -> list[int]:
    """A little of everything the log holds; returns the delivery ids."""
    ids = []
    for n in range(3):
        delivery = log.claim(claim(n), NOW + timedelta(minutes=n), decision={"action": "send", "reasons": ["r"]})
        assert delivery is not None
        log.record(Event(Kind.DELIVERY, "sent", delivery_id=delivery.id, provider="twilio",
                         provider_message_id=f"SM{n}"), NOW + timedelta(minutes=n, seconds=1))
        ids.append(delivery.id)
    Events(log, None).paid("INV-1", NOW + timedelta(hours=1), by="billing", amount="12.50")
    Events(log, None).optout("+8613800138000", NOW + timedelta(hours=2), by="sms-reply")
    log.escalate("INV-2/due_day", "INV-2", "ACME-001", ["3 unanswered calls"], NOW + timedelta(hours=3))
    return ids


def event_ids(log: ContactLog) -> list[int]:
    return [row["id"] for row in log.history()]


def tamper(log: ContactLog, statement: str, **values: Any) -> None:
    with log.engine.begin() as conn:
        conn.execute(text(statement), values)


def test_a_log_written_the_normal_way_is_intact_and_names_its_head(log: ContactLog) -> None:
    fill(log)
    verdict = log.verify()
    assert verdict.intact, verdict.problems
    last = list(log.history())[-1]
    assert verdict.events == len(event_ids(log)) and verdict.head == f"{last['id']}:{last['digest']}"
    assert log.verify(head=verdict.head).intact


@pytest.mark.parametrize("change", [
    "UPDATE events SET status = 'delivered' WHERE id = :target",
    "UPDATE events SET occurred_at = occurred_at - INTERVAL '1 hour' WHERE id = :target",
    "UPDATE events SET detail = NULL WHERE id = :target",
])
def test_an_altered_event_is_named(log: ContactLog, change: str) -> None:
    fill(log)
    target = event_ids(log)[3]
    if log.engine.dialect.name == "sqlite":
        change = change.replace("occurred_at - INTERVAL '1 hour'", "datetime(occurred_at, '-1 hour')")
    tamper(log, change, target=target)
    verdict = log.verify()
    assert len(verdict.problems) == 1 and verdict.problems[0].startswith(f"event {target} "), verdict.problems


def test_a_changed_recipient_or_template_version_of_a_delivery_is_found(log: ContactLog) -> None:
    deliveries = fill(log)
    tamper(log, "UPDATE deliveries SET recipient = '+8613900000000' WHERE id = :d", d=deliveries[1])
    tamper(log, "UPDATE deliveries SET template_version = :v WHERE id = :d", v="cd" * 32, d=deliveries[2])
    claimed = [r["id"] for r in log.history() if r["status"] == "claimed"]
    problems = log.verify().problems
    assert [p.split(" ")[1] for p in problems] == [str(claimed[1]), str(claimed[2])], problems


def test_a_removed_event_breaks_the_chain_at_the_next_one(log: ContactLog) -> None:
    deliveries = fill(log)
    ids = event_ids(log)
    tamper(log, "DELETE FROM events WHERE id = :target", target=ids[5])  # the second "sent"
    problems = log.verify().problems
    assert len(problems) == 1 and problems[0].startswith(f"event {ids[6]} "), problems
    tamper(log, "DELETE FROM events WHERE id = :target", target=ids[4])  # the second claim: its delivery is orphaned
    assert log.verify().problems[1:] == [f"delivery {deliveries[1]}: no claimed event, so outside the chain"]


def test_a_cut_off_end_is_found_against_an_anchor_kept_elsewhere(log: ContactLog) -> None:
    fill(log)
    anchor = log.verify().head
    tamper(log, "DELETE FROM events WHERE id = :target", target=int(anchor.split(":")[0]))
    assert log.verify().intact, "without an anchor a shortened chain still links"
    [problem] = log.verify(head=anchor).problems
    assert "cut short" in problem


def test_writers_in_several_processes_keep_one_chain(log: ContactLog) -> None:
    url = log.engine.url.render_as_string(hide_password=False)
    writers = [ContactLog.open(url, MASTER_KEY).migrate() for _ in range(6)]
    start = threading.Barrier(len(writers))

    def write(n: int) -> None:
        own = writers[n]
        start.wait()
        for k in range(15):
            delivery = own.claim(claim(n * 100 + k, "email", f"d{n}@example.com"), NOW, decision={"action": "send"})
            assert delivery is not None
            own.record(Event(Kind.DELIVERY, "sent", delivery_id=delivery.id, provider="smtp"), NOW)

    with ThreadPoolExecutor(len(writers)) as pool:
        list(pool.map(write, range(len(writers))))
    for own in writers:
        own.engine.dispose()
    verdict = log.verify()
    assert verdict.intact and verdict.events == 6 * 15 * 3, verdict.problems


def test_events_written_before_the_chain_are_linked_by_the_migration(tmp_path: Path, postgres_url: str) -> None:
    for url in (f"sqlite:///{tmp_path}/old.db", _fresh_postgres_database(postgres_url)):
        engine = create_engine(url)
        upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO deliveries (delivery_key, job_id, invoice_id, account_id, channel, "
                              "recipient, stage, template, template_version, reasons, rules, zones, claimed_at) "
                              "VALUES ('K#sms', 'K', 'INV-1', 'A', 'sms', '+8613800138000', 'due_day', 't', 'v', "
                              "'[\"r\"]', '[\"W-BIZ\"]', '[\"Asia/Shanghai\"]', :at)"), {"at": NOW})
            statuses = ["claimed", "sent"] + ["delivered"] * 5001  # more than one page of the migration's
            conn.execute(text("INSERT INTO events (delivery_id, job_id, invoice_id, account_id, kind, status, "
                              "detail, occurred_at, recorded_at) VALUES (1, 'K', 'INV-1', 'A', 'delivery', "
                              ":status, '{\"n\": 1}', :at, :at)"), [{"status": s, "at": NOW} for s in statuses])
        engine.dispose()
        log = ContactLog.open(url, MASTER_KEY).migrate()  # migrates to the newest revision
        log.record(Event(Kind.INVOICE, "paid", invoice_id="INV-1", account_id="A"), NOW)
        verdict = log.verify()
        assert verdict.intact and verdict.events == 5004, (url, verdict.problems)
        tamper(log, "UPDATE events SET status = 'failed' WHERE id = 5002")
        assert [p.split(" ")[1] for p in log.verify().problems] == ["5002"], "linked across the page boundary"
        log.engine.dispose()


def test_a_log_of_one_chain_is_kept_as_chain_0_and_new_events_go_to_the_chains(tmp_path: Path,
                                                                               postgres_url: str) -> None:
    for url in (f"sqlite:///{tmp_path}/one-chain.db", _fresh_postgres_database(postgres_url)):
        engine = create_engine(url)
        upgrade(engine, "0012")  # the last revision with one chain, written by its own code's rules
        engine.dispose()
        log = ContactLog.open(url, MASTER_KEY)
        with log.engine.begin() as conn:  # the one chain, as that version linked it
            previous = GENESIS
            for n in range(3):
                row = {"kind": "invoice", "status": "payment", "invoice_id": f"INV-{n}", "account_id": "A",
                       "detail": {"amount": "1.00"}, "occurred_at": NOW, "recorded_at": NOW}
                previous = digest(previous, row)
                conn.execute(insert(events).values(**row, digest=previous))
        log.migrate(chains=8)
        assert log.chain_count() == 8
        log.record(Event(Kind.INVOICE, "paid", invoice_id="INV-1", account_id="A"), NOW)
        log.record(Event(Kind.INVOICE, "paid", invoice_id="INV-9", account_id="B"), NOW)
        verdict = log.verify()
        assert verdict.intact and verdict.events == 5, (url, verdict.problems)
        assert verdict.heads[0] == (3, previous)  # chain 0: the old chain, closed as it was
        assert sorted(size for k, (size, _) in verdict.heads.items() if k) in ([1, 1], [2])
        assert log.verify(account="A").events == verdict.heads[of_account("A", 8)][0]
        tamper(log, "DELETE FROM events WHERE id = 3")  # chain 0's last event: nothing after it in its chain
        assert ["chain 0" in p and "cut short" in p for p in log.verify().problems] == [True]
        log.engine.dispose()


def test_the_command_exits_0_when_intact_1_when_not_and_2_on_a_bad_anchor(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/dunning.db"
    log = ContactLog.open(url, MASTER_KEY).migrate()
    fill(log)
    run = [DUNNING, "log", "verify"]
    env = {"DUNNING_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    intact = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
    assert intact.returncode == 0 and "intact: 12 events in 64 chains; newest event " in intact.stdout, intact.stderr
    head = intact.stdout.split("newest event ")[1].split()[0]
    assert subprocess.run([*run, "--head", head], capture_output=True, env=env, timeout=60).returncode == 0
    assert subprocess.run([*run, "--head", "12:abc"], capture_output=True, env=env, timeout=60).returncode == 2
    tamper(log, "UPDATE events SET error_text = 'nothing happened' WHERE id = 2")
    broken = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
    assert broken.returncode == 1 and "event 2 (delivery claimed" in broken.stderr and "Traceback" not in broken.stderr
    log.engine.dispose()


def _fresh_postgres_database(url: str) -> str:
    name = f"mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"
