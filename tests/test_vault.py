"""Personal data at rest (issue 14, part 1): sealed under a key per account as it is
written, opened by the one door (`worker.db.vault`) as it is read, found by
blind index, covered by the chain as ciphertext — and unreadable for good, with the
chain still verifying, once an account's key is destroyed. On both databases."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sealed import MASTER_KEY
from sqlalchemy import MetaData, select, text, update
from test_cli import dunning

from worker.contact_log import Claim, ContactLog
from worker.contact_log.kinds import Event, Kind
from worker.db.schema import deliveries, events
from worker.db.vault import ERASED, SEALED
from worker.errors import VaultLocked, WrongMasterKey
from worker.events import Events
from worker.jobs.book import JobBook, JobRow

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
EMAIL, PHONE, NAME, NOTE = "Zhang.Wei@Example.com", "+8613800138000", "张伟", "called his lawyer Li Na"
OTHER_EMAIL = "li.na@example.org"
PERSONAL = (EMAIL, EMAIL.casefold(), PHONE, NAME, NOTE, "13800138000", "Li Na", "zhang.wei@", "+86138****8000")


def claim(account: str, invoice: str, recipient: str, channel: str = "email") -> Claim:
    return Claim(f"{invoice}/due_day#{channel}", f"{invoice}/due_day", invoice, account, channel, recipient,
                 "due_day", f"en/due_day.{channel}.j2", "ab" * 32, ("due today",), ("W-BIZ",), ("Asia/Shanghai",))


def fill(log: ContactLog) -> None:
    """One person's record with every kind of personal value, and another account's."""
    payload = json.dumps({"job_id": "INV-1/due_day", "debtor": {"account_id": "ACME-001", "name": NAME,
                                                                 "email": EMAIL, "phone": PHONE}}, ensure_ascii=False)
    taken, _ = JobBook(log).take_jobs([JobRow("INV-1/due_day", "INV-1", "ACME-001", payload),
                              JobRow("INV-9/due_day", "INV-9", "OTHER-9", json.dumps({"email": OTHER_EMAIL}))], NOW)
    assert len(taken) == 2
    delivery = log.claim(claim("ACME-001", "INV-1", EMAIL), NOW)
    assert delivery is not None
    log.record(Event(Kind.DELIVERY, "failed", delivery_id=delivery.id, provider="twilio", error_code="21211",
                     error_text=f"The 'To' number {PHONE} is not a valid phone number",
                     detail={"to": "+86138****8000"}), NOW)
    events_ = Events(log, None)
    events_.optout(PHONE, NOW, by="billing")  # an address alone, no account: sealed under the address's key
    events_.cease("ACME-001", NOW, by="billing", note=NOTE)
    log.record(Event(Kind.INBOUND, "other", provider="twilio", address=PHONE,
                     detail={"from": PHONE, "body": f"this is {NAME}, stop it", "replied": False}), NOW)
    log.claim(claim("OTHER-9", "INV-9", OTHER_EMAIL), NOW)


def stored_text(log: ContactLog) -> str:
    """Every row of every table, as the database holds it."""
    tables = MetaData()
    tables.reflect(log.engine)
    with log.engine.connect() as conn:
        return "\n".join(json.dumps([list(map(str, row)) for row in conn.execute(select(table))], ensure_ascii=False)
                         for table in tables.sorted_tables)


def test_personal_values_are_stored_sealed_and_read_back_plain(log: ContactLog) -> None:
    fill(log)
    stored = stored_text(log)
    for value in PERSONAL:
        assert value not in stored, value
    assert "sealed:v1:" in stored and "ACME-001" in stored  # ids, kinds, statuses stay readable
    history = list(log.history(account="ACME-001"))
    assert [r["recipient"] for r in history if r["kind"] == "delivery"] == [EMAIL, EMAIL]
    assert history[1]["error_text"].startswith(f"The 'To' number {PHONE}")
    assert next(r for r in history if r["kind"] == "account")["detail"]["note"] == NOTE
    assert json.loads(JobBook(log).job_row("INV-1/due_day")["payload"])["debtor"]["name"] == NAME
    inbound = next(r for r in log.history() if r["kind"] == "inbound")
    assert inbound["address"] == PHONE and inbound["detail"]["body"] == f"this is {NAME}, stop it"
    assert log.verify().intact


def test_addresses_are_matched_by_blind_index(log: ContactLog) -> None:
    fill(log)
    assert log.suppressed(PHONE) and not log.suppressed("+8613900139000")
    facts = log.facts_for("ACME-002", "INV-2", "INV-2/x", NOW, addresses=[PHONE, "someone@example.com"])
    assert facts.suppressed_addresses == frozenset({PHONE})
    assert [(f.account_id, f.invoice_id) for f in log.search(EMAIL.upper(), NOW.date())] == [("ACME-001", "INV-1")]
    found = log.search("+86 138-0013-8000", NOW.date())  # never dialled: the number is in the account's job
    assert [(f.account_id, f.matched) for f in found] == [("ACME-001", ("phone",))]
    log.claim(claim("ACME-001", "INV-1", PHONE, "sms"), NOW)
    assert [f.account_id for f in log.search("+86 138-0013-8000", NOW.date())] == ["ACME-001"]


def test_the_chain_covers_the_ciphertexts(log: ContactLog) -> None:
    fill(log)
    with log.engine.begin() as conn:
        sealed = conn.execute(select(deliveries.c.id, deliveries.c.recipient)
                              .where(deliveries.c.account_id == "OTHER-9")).one()
        mine = conn.execute(select(deliveries.c.recipient).where(deliveries.c.account_id == "ACME-001")).scalar_one()
        conn.execute(update(deliveries).where(deliveries.c.id == sealed.id).values(recipient=mine))
    verdict = log.verify()
    assert not verdict.intact and "altered" in verdict.problems[0]


def test_without_the_master_key_values_read_sealed_nothing_personal_is_written_and_the_chain_verifies(
        log: ContactLog) -> None:
    fill(log)
    locked = ContactLog(log.engine)
    assert {r["recipient"] for r in locked.history() if r["kind"] == "delivery"} == {SEALED}
    assert locked.verify().intact
    with pytest.raises(VaultLocked, match="DUNNING_MASTER_KEY is not set"):
        locked.claim(claim("ACME-003", "INV-3", "x@example.com"), NOW)
    with pytest.raises(WrongMasterKey, match="does not open this log's keys"):
        ContactLog(log.engine, os.urandom(32)).vault.check()


def test_destroying_an_accounts_keys_erases_its_personal_data_and_the_chain_still_verifies(log: ContactLog) -> None:
    fill(log)
    with log.engine.begin() as conn:
        gone = log.vault.destroy(conn, "ACME-001", [EMAIL, PHONE])
    assert len(gone) == 2  # the account's key and its phone number's own (the opt-out named no account)
    history = list(log.history(account="ACME-001"))
    assert {r["recipient"] for r in history if r["kind"] == "delivery"} == {ERASED}
    assert next(r for r in history if r["kind"] == "account")["detail"]["note"] == ERASED
    inbound = next(r for r in log.history() if r["kind"] == "inbound")
    assert inbound["address"] == ERASED and inbound["detail"]["body"] == ERASED
    assert JobBook(log).job_row("INV-1/due_day")["payload"] == ERASED
    assert log.search(EMAIL, NOW.date()) == [] and log.search(PHONE, NOW.date()) == []
    with log.engine.connect() as conn:
        assert conn.execute(select(events.c.id).where(events.c.address_index.is_not(None),
                                                      events.c.account_id.is_(None))).all() == []
    other = [r["recipient"] for r in log.history(account="OTHER-9") if r["kind"] == "delivery"]
    assert other == [OTHER_EMAIL]  # nobody else's record changes
    assert log.verify().intact
    # New data for the account starts a new key, which opens what it seals.
    again = JobRow("INV-1/again", "INV-1", "ACME-001", '{"email": "new@example.com"}')
    JobBook(log).take_jobs([again], NOW + timedelta(days=1))
    assert JobBook(log).job_row("INV-1/again")["payload"] == '{"email": "new@example.com"}'


def test_rows_written_before_sealing_are_read_as_they_are_and_indexed_for_matching(log: ContactLog) -> None:
    with log.engine.begin() as conn:  # an opt-out as an earlier version wrote it: plain, no blind index
        conn.execute(text("INSERT INTO events (kind, status, address, detail, occurred_at, recorded_at, digest) "
                          "VALUES ('suppression', 'suppressed', :address, :detail, :at, :at, NULL)"),
                     {"address": PHONE, "detail": json.dumps({"address": PHONE, "channel": "sms"}),
                      "at": NOW.replace(tzinfo=None)})
    assert not log.suppressed(PHONE)
    assert log.vault.index_legacy() == 1 and log.vault.index_legacy() == 0
    assert log.suppressed(PHONE)
    assert next(log.history())["address"] == PHONE


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker", "--processes", "1"]])
def test_long_running_commands_refuse_to_start_without_the_master_key(command: list[str], tmp_path: Path) -> None:
    result = dunning(*command, env={"DUNNING_SECRET_KEY": "k" * 32, "DUNNING_MASTER_KEY": "",
                                    "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path}/l.db",
                                    "DUNNING_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 2
    assert "not starting: DUNNING_MASTER_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_enqueueing_without_the_master_key_says_what_to_set_and_records_nothing(tmp_path: Path,
                                                                                redis_server: object) -> None:
    from conftest import SAMPLE

    url = f"sqlite:///{tmp_path}/l.db"
    ContactLog.open(url, MASTER_KEY).migrate().engine.dispose()
    source = tmp_path / "job.json"
    source.write_text(json.dumps(SAMPLE, ensure_ascii=False), encoding="utf-8")
    result = dunning("enqueue", str(source), env={"DUNNING_MASTER_KEY": "", "DUNNING_DATABASE_URL": url,
                                                   "DUNNING_REDIS_URL": redis_server.url})  # type: ignore[attr-defined]
    assert result.returncode == 2 and "DUNNING_MASTER_KEY is not set" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert JobBook(ContactLog.open(url, MASTER_KEY)).job_row(SAMPLE["job_id"]) is None
