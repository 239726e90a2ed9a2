"""Records (issue 14, parts 2–4): retention clocks per debt, legal holds, erasure and
purge — refused and recorded within retention or under hold, final otherwise: after it
no name, address, phone number or note of the person is readable in the SQLite file,
a PostgreSQL dump or Redis, while others' records stay and the chain verifies — key
rotation, intake refusing a replayed job, and the subject-access export. Both databases."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sealed import MASTER_KEY_TEXT
from sqlalchemy import insert, text
from test_cli import dunning
from test_pipeline import world  # noqa: F401 (the pipeline in process: messages really sent)

from worker.contact_log import Claim, ContactLog
from worker.contact_log.kinds import Event, Kind
from worker.db.schema import idempotency
from worker.db.vault import ERASED
from worker.events import Events
from worker.jobs.book import JobBook, JobRow
from worker.policy import profiles
from worker.queue.agenda import Agenda
from worker.queue.broker import make_broker
from worker.records.book import RecordBook
from worker.records.erasure import Records

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
NAME, EMAIL, PHONE = "张伟", "Zhang.Wei@Example.com", "+8613800138000"
NOTE = "disputes via counsel Wu Lei"
OTHER_NAME, OTHER_EMAIL = "Li Na", "li.na@example.org"
FORMS = [NAME, EMAIL, EMAIL.casefold(), PHONE, "13800138000", "138-0013-8000", "+86138****8000", "Z***@Example.com",
         "z***@example.com", NOTE, "Wu Lei"]

def records_of(log: ContactLog, agenda: Agenda | None, broker: Any, known: Any, years: int) -> Records:
    """Records requests on `log` with its books, as `dunning records` builds them."""
    return Records(log, RecordBook(log), JobBook(log), agenda, broker, known, years)


def export_of(log: ContactLog, subject: str, folder: Path, now: datetime, settings: Any, *, by: str) -> Any:
    """A subject-access export from `log`, as `dunning records export` makes it."""
    from worker.records.access import export

    return export(log, RecordBook(log), JobBook(log), subject, folder, now, settings, by=by)



def job(account: str, invoice: str, name: str, email: str, phone: str | None, profile: str) -> dict[str, Any]:
    return {"job_id": f"{invoice}/due_day", "invoice": {"id": invoice},
            "debtor": {"account_id": account, "name": name, "email": email, "phone": phone}, "profile": profile}


def claim(account: str, invoice: str, recipient: str, channel: str, key: str = "due_day") -> Claim:
    return Claim(f"{invoice}/{key}#{channel}", f"{invoice}/due_day", invoice, account, channel, recipient, "due_day",
                 f"en/due_day.{channel}.j2", "ab" * 32, ("due today",), ("W-BIZ",), ("Asia/Shanghai",))


@pytest.fixture()
def records(log: ContactLog, redis_client: Any, redis_server: Any) -> Iterator[Records]:
    broker = make_broker(redis_server.url)
    yield records_of(log, Agenda(redis_client), broker, profiles(None), 6)
    broker.close()


def fill(log: ContactLog, redis_client: Any, profile: str = "us-consumer-3p", at: datetime = NOW) -> None:
    """Zhang Wei's record — jobs, an email and a text, a failed call naming the number, an
    opt-out by number from billing, a note, a text back, a scheduled job in the agenda, a
    dead letter, a remembered API answer, a dramatiq dead message — and Li Na's."""
    mine = job("ACME-001", "INV-1", NAME, EMAIL, PHONE, profile)
    theirs = job("OTHER-9", "INV-9", OTHER_NAME, OTHER_EMAIL, None, profile)
    JobBook(log).take_jobs([JobRow(mine["job_id"], "INV-1", "ACME-001", json.dumps(mine, ensure_ascii=False)),
                   JobRow(theirs["job_id"], "INV-9", "OTHER-9", json.dumps(theirs))], at)
    JobBook(log).mark_queued([mine["job_id"], theirs["job_id"]], at)
    log.claim(claim("ACME-001", "INV-1", EMAIL, "email"), at)
    sms = log.claim(claim("ACME-001", "INV-1", PHONE, "sms"), at)
    assert sms is not None
    log.record(Event(Kind.DELIVERY, "failed", delivery_id=sms.id, provider="twilio", error_code="30003",
                     error_text=f"unreachable handset {PHONE}", detail={"to": "+86138****8000"}), at)
    events = Events(log, Agenda(redis_client))
    events.optout(PHONE, at, by="billing")
    events.dispute("INV-1", at, by="billing", note=NOTE)
    log.record(Event(Kind.INBOUND, "other", provider="twilio", address=PHONE,
                     detail={"from": PHONE, "body": f"{NAME} here, 138-0013-8000"}), at)
    log.claim(claim("OTHER-9", "INV-9", OTHER_EMAIL, "email"), at)
    Agenda(redis_client).schedule_many([("INV-1/later", {"job": mine}, at + timedelta(days=30)),
                                        ("INV-9/later", {"job": theirs}, at + timedelta(days=30))])
    log.dead_letter("intake line 3", f"debtor.phone: {PHONE} is not valid", json.dumps(mine, ensure_ascii=False),
                    at, "INV-1/bad")
    with log.engine.begin() as conn:
        conn.execute(insert(idempotency).values(api_key="billing", key="k-1", body_hash="0" * 64, status=200,
                                                response=json.dumps({"accepted": [mine["job_id"]]}), created_at=at))
    redis_client.hset("dramatiq:reminders.XQ.msgs", "m-1", json.dumps({"args": [{"job": mine}]}))
    redis_client.zadd("dramatiq:reminders.XQ", {"m-1": 1})


def test_erasure_within_retention_is_refused_saying_until_when_recorded_and_ceases_contact(
        records: Records, log: ContactLog, redis_client: Any) -> None:
    fill(log, redis_client)
    answer = records.erase("ACME-001", "GDPR request #77", NOW + timedelta(days=1), by="li.na")
    assert not answer.done
    assert "kept until 2029-12-01 by rule R-REGF-3Y" in answer.message and "invoice INV-1" in answer.message
    history = [(r["kind"], r["status"]) for r in log.history(account="ACME-001")][-2:]
    assert history == [("erasure", "refused"), ("account", "ceased")]
    assert log.facts_for("ACME-001", "INV-1", "x", NOW + timedelta(days=1)).ceased
    assert next(r for r in log.history(account="ACME-001") if r["kind"] == "delivery")["recipient"] == EMAIL


def test_a_hold_stops_erasure_and_purge_until_it_is_released(records: Records, log: ContactLog,
                                                              redis_client: Any) -> None:
    fill(log, redis_client)
    later = NOW + timedelta(days=4 * 365)
    assert records.hold("INV-1", "litigation 2030-114", later, by="li.na").done
    answer = records.erase("ACME-001", "GDPR request #78", later, by="li.na")
    assert not answer.done and "on legal hold (invoice INV-1" in answer.message
    assert "litigation 2030-114" in answer.message
    assert [s.account_id for s, _ in records.purge(later, later, dry_run=True, by="cron")] == ["OTHER-9"]
    assert records.release("INV-1", "settled", later, by="li.na").done
    due = records.purge(later, later, dry_run=True, by="cron")
    assert [(s.account_id, s.kept.rule, s.kept.until.date().isoformat()) for s, _ in due] == [
        ("ACME-001", "R-REGF-3Y", "2029-12-01"), ("OTHER-9", "R-REGF-3Y", "2029-12-01")]
    assert all(answer is None for _, answer in due)  # a dry run erases nothing
    assert log.history(account="ACME-001").__next__()["kind"] != "erasure"
    assert [s.account_id for s, a in records.purge(later, later, dry_run=False, by="cron") if a and a.done] == [
        "ACME-001", "OTHER-9"]
    assert records.purge(later, later, dry_run=False, by="cron") == []  # erased once: a daily run is safe


def test_the_retention_clock_restarts_with_new_activity_and_business_debts_keep_the_house_default(
        records: Records, log: ContactLog, redis_client: Any) -> None:
    fill(log, redis_client)
    log.claim(claim("ACME-001", "INV-1", EMAIL, "email", key="second"), datetime(2028, 12, 1, 2, 0, tzinfo=UTC))
    just_after_three_years = NOW + timedelta(days=3 * 365 + 2)
    due = {s.account_id for s, _ in records.purge(just_after_three_years, just_after_three_years, dry_run=True,
                                                  by="cron")}
    assert due == {"OTHER-9"}  # Zhang Wei's debt saw activity a year later: its clock restarted
    standing = records.standing("ACME-001", just_after_three_years)
    assert standing.kept.until is not None and standing.kept.until.date().isoformat() == "2031-12-01"
    business = records_of(log, None, None, profiles(None), 6)
    payload = json.dumps(job("BIZ-1", "B-1", "Acme Ltd", "ap@acme.example", None, "us-b2b"))
    JobBook(log).take_jobs([JobRow("B-1/due_day", "B-1", "BIZ-1", payload)], NOW)
    kept = business.standing("BIZ-1", NOW).kept
    assert (kept.rule, kept.until.date().isoformat() if kept.until else None) == ("R-HOUSE", "2032-12-01")
    assert records_of(log, None, None, profiles(None), 10).standing("BIZ-1", NOW).kept.years == 10  # RETENTION_YEARS


def test_after_erasure_nothing_of_the_person_is_readable_anywhere_and_the_chain_verifies(
        records: Records, log: ContactLog, redis_client: Any, tmp_path: Path) -> None:
    fill(log, redis_client)
    with pytest.raises(AssertionError):
        _nothing_of_the_person_in(log, redis_client, tmp_path)  # before: it is there (the check can fail)
    assert log.search(NAME, NOW.date()) and log.search("acme-001", NOW.date()), "found by name, and id without case"
    later = NOW + timedelta(days=4 * 365)
    answer = records.erase("ACME-001", "GDPR request #79", later, by="li.na")
    assert answer.done, answer.message
    assert answer.detail["keys"] == 2 and answer.detail["agenda"] == 1 and answer.detail["dead_messages"] == 1
    _nothing_of_the_person_in(log, redis_client, tmp_path)
    assert log.verify().intact
    mine = list(log.history(account="ACME-001"))
    assert {r["recipient"] for r in mine if r["kind"] == "delivery"} == {ERASED}
    assert (mine[-1]["kind"], mine[-1]["status"], mine[-1]["detail"]["reason"]) == ("erasure", "erased",
                                                                                     "GDPR request #79")
    theirs = [r["recipient"] for r in log.history(account="OTHER-9") if r["kind"] == "delivery"]
    assert theirs == [OTHER_EMAIL] and JobBook(log).job_row("INV-9/due_day")["payload"].count(OTHER_NAME) == 1
    assert redis_client.hexists("dunning:agenda:payload", "INV-9/later")
    assert log.search(OTHER_EMAIL, later.date()) and not log.search(EMAIL, later.date())
    assert not log.search(NAME, later.date()) and log.search(OTHER_NAME, later.date()), "its marks went with it"


def _nothing_of_the_person_in(log: ContactLog, redis_client: Any, tmp_path: Path) -> None:
    """No form of the person's name, addresses or note in the database's bytes or Redis."""
    if log.engine.dialect.name == "sqlite":
        with log.engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        path = Path(log.engine.url.database or "")
        stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    else:
        url = log.engine.url
        dump = subprocess.run(["pg_dump", "-h", str(url.host), "-p", str(url.port), "-U", str(url.username),
                               "--data-only", str(url.database)], capture_output=True, check=True)
        stored = dump.stdout
    keys = list(redis_client.scan_iter("*"))
    stored += b"\n".join(keys + [redis_client.dump(key) or b"" for key in keys])
    for form in FORMS:
        assert form.encode() not in stored, form
        assert json.dumps(form).encode() not in stored, form  # as JSON escapes it


def test_a_replayed_job_of_an_erased_account_is_refused_and_a_new_one_starts_a_new_key(
        records: Records, log: ContactLog, redis_client: Any, redis_server: Any) -> None:
    from conftest import SAMPLE

    from worker.jobs.intake import submit
    from worker.jobs.parse import parse_job

    fill(log, redis_client)
    later = NOW + timedelta(days=4 * 365)
    assert records.erase("ACME-001", "GDPR request #80", later, by="li.na").done
    broker = make_broker(redis_server.url)
    replay = {**SAMPLE, "job_id": "INV-1/due_day", "debtor": {**SAMPLE["debtor"], "account_id": "ACME-001"}}
    fresh = {**replay, "job_id": "INV-2026-7/due_day", "invoice": {**SAMPLE["invoice"], "id": "INV-2026-7"}}
    known = profiles(None)
    result = submit([parse_job(replay, known), parse_job(fresh, known)], JobBook(log), known, broker, later)
    broker.close()
    assert [r.job_id for r in result.rejected] == ["INV-1/due_day"]
    assert "was accepted before account ACME-001 was erased" in result.rejected[0].errors[0]
    assert result.accepted_ids == ["INV-2026-7/due_day"]
    kept = JobBook(log).job_row("INV-2026-7/due_day")
    assert json.loads(kept["payload"])["debtor"]["email"] == SAMPLE["debtor"]["email"]  # type: ignore[index]
    [letter] = [d for d in log.dead_letters() if d["job_id"] == "INV-1/due_day"]
    assert SAMPLE["debtor"]["email"] not in letter["payload"]


def test_the_cli_says_why_an_erasure_is_refused_and_rotates_the_master_key(tmp_path: Path, redis_server: Any) -> None:
    import base64
    import os

    url = f"sqlite:///{tmp_path}/log.db"
    env = {"DUNNING_DATABASE_URL": url, "DUNNING_REDIS_URL": redis_server.url}
    assert dunning("migrate", env=env).returncode == 0
    payload = json.dumps(job("ACME-001", "INV-1", NAME, EMAIL, PHONE, "cn-fi-consumer"), ensure_ascii=False)
    log = ContactLog.open(url, base64.b64decode(MASTER_KEY_TEXT))
    JobBook(log).take_jobs([JobRow("INV-1/due_day", "INV-1", "ACME-001", payload)], datetime.now(UTC))
    refused = dunning("records", "erase", "ACME-001", "--reason", "ticket 9", env=env)
    assert refused.returncode == 1 and "by rule R-NIFA-5Y" in refused.stderr, refused.stderr
    shown = dunning("records", "show", "ACME-001", env=env)
    assert "erasable now: no" in shown.stdout and "R-NIFA-5Y" in shown.stdout
    assert dunning("records", "hold", "ACME-001", "--reason", "", env=env).returncode == 1  # a reason is required
    assert dunning("records", "erase", "NOBODY", "--reason", "x", env=env).returncode == 1
    new = base64.b64encode(os.urandom(32)).decode()
    rotated = subprocess.run([str(Path(dunning.__globals__["DUNNING"])), "records", "rotate-key"], input=new + "\n",
                             capture_output=True, text=True, env={**os.environ, **env}, timeout=60)
    assert rotated.returncode == 0 and "2 key(s) re-wrapped" in rotated.stdout, rotated.stderr
    assert new not in rotated.stdout + rotated.stderr
    after = ContactLog.open(url, base64.b64decode(new))
    assert json.loads(JobBook(after).job_row("INV-1/due_day")["payload"])["debtor"]["name"] == NAME
    stale = dunning("records", "show", "ACME-001", env=env)  # a process still on the old key
    assert stale.returncode == 2 and "DUNNING_MASTER_KEY does not open this log's keys" in stale.stderr, stale.stderr
    assert "Traceback" not in stale.stderr
    ok = dunning("records", "show", "ACME-001", env={**env, "DUNNING_MASTER_KEY": new})
    assert ok.returncode == 0 and "R-NIFA-5Y" in ok.stdout


def test_the_subject_access_export_holds_all_and_only_the_persons_records(world: Any, tmp_path: Path) -> None:  # noqa: F811
    import asyncio

    from test_pipeline import email_job

    from worker.jobs.parse import parse_job
    from worker.queue.envelope import envelope_for
    from worker.settings import Settings

    log = world.log
    sent = []
    for data in (email_job(), email_job(job_id="INV-2026-0043/due_day", invoice__id="INV-2026-0043",
                                        debtor__email="cfo@example.com"),
                 email_job(job_id="INV-2026-0099/due_day", invoice__id="INV-2026-0099", debtor__account_id="OTHER-9",
                           debtor__email=OTHER_EMAIL, debtor__name=OTHER_NAME)):
        parsed = parse_job(data, profiles(None)).job
        assert parsed is not None
        JobBook(log).accept_job(parsed.job_id, parsed.invoice.id, parsed.debtor.account_id,
                       json.dumps(data, ensure_ascii=False), NOW)
        sent.append(parsed)

    async def send_all() -> list[str]:  # one event loop: the SMTP connection belongs to it
        return [await world.pipeline.handle(dict(envelope_for(parsed))) for parsed in sent]

    assert asyncio.run(send_all()) == ["sent", "sent", "sent"]
    settings = Settings.from_env({"DUNNING_SECRET_KEY": "k" * 32})  # the worker's, so the messages reproduce
    by_address = export_of(log, sent[0].debtor.email, tmp_path / "by-address", NOW, settings, by="li.na")
    held = json.loads((tmp_path / "by-address/records.json").read_text())
    report = (tmp_path / "by-address/report.html").read_text()
    assert by_address.accounts == ["ACME-001"] and held["subject"]["addresses"] == ["zhang.wei@example.com"]
    mine, cfo = held["contacts"]
    assert mine["recipient"] == sent[0].debtor.email and mine["message"]["identical_to_what_was_sent"] is True
    assert sent[0].invoice.number in mine["message"]["subject"] and "张伟" in mine["message"]["text"]
    assert cfo["recipient"] != "cfo@example.com" and "text" not in cfo["message"]  # someone else's: masked, left out
    everything = json.dumps(held, ensure_ascii=False) + report
    assert "cfo@example.com" not in everything and OTHER_EMAIL not in everything and OTHER_NAME not in everything
    assert "<script" not in report and "decision" in report and mine["message"]["subject"] in report
    by_account = export_of(log, "ACME-001", tmp_path / "by-account", NOW, settings, by="li.na")
    held = json.loads((tmp_path / "by-account/records.json").read_text())
    assert by_account.contacts == 2 and {c["recipient"] for c in held["contacts"]} == {sent[0].debtor.email,
                                                                                       "cfo@example.com"}
    assert OTHER_EMAIL not in json.dumps(held) and len(held["decisions"]) == 2
    exported = [r for r in log.history() if r["kind"] == "access" and r["status"] == "exported"]
    assert [r["detail"].get("search") or r["detail"].get("account") for r in exported] == [
        "zhang.wei@example.com", "ACME-001"]


def test_an_address_or_number_only_a_job_names_is_held_and_exported(log: ContactLog, tmp_path: Path) -> None:
    """"Nothing held" would be false for an address that came in a job and was never
    contacted, or a number known only from an opt-out: each finds what the log holds."""
    from worker.records.access import NothingHeld
    from worker.settings import Settings

    mine = job("ACME-002", "INV-2", "Li Na", "li.na@example.com", "+8613900139000", "default")
    JobBook(log).take_jobs([JobRow(mine["job_id"], "INV-2", "ACME-002", json.dumps(mine))], NOW)
    Events(log, None).optout("+14155550188", NOW, by="api:erp")
    settings = Settings.from_env({"DUNNING_SECRET_KEY": "k" * 32})
    for subject in ("Li.Na@Example.com", "+86 139 0013 9000", "0086 13900139000"):
        done = export_of(log, subject, tmp_path / subject.replace(" ", ""), NOW, settings, by="compliance")
        held = json.loads((tmp_path / subject.replace(" ", "") / "records.json").read_text())
        assert done.accounts == ["ACME-002"] and [j["job_id"] for j in held["jobs"]] == ["INV-2/due_day"], subject
    only_opted = export_of(log, "+14155550188", tmp_path / "opted", NOW, settings, by="compliance")
    assert only_opted.accounts == [] and only_opted.events == 1, "the opt-out is what is held"
    with pytest.raises(NothingHeld):
        export_of(log, "nobody@example.com", tmp_path / "nobody", NOW, settings, by="compliance")


def test_jobs_taken_before_marks_were_kept_are_marked_when_the_worker_starts(log: ContactLog) -> None:
    """Migration 0012 notes the accounts whose jobs came before it; `mark_pending` (run by
    `worker` and `serve` as they start, with the master key) makes them findable."""
    from sqlalchemy import delete

    from worker.contact_log import parties
    from worker.db.schema import party_marks
    mine = job("ACME-003", "INV-3", "Wang Fang", "wang.fang@example.com", "+8613700137000", "default")
    JobBook(log).take_jobs([JobRow(mine["job_id"], "INV-3", "ACME-003", json.dumps(mine))], NOW)
    with log.engine.begin() as conn:  # as the log was before 0012, and as the migration leaves it
        conn.execute(delete(party_marks))
        conn.execute(insert(party_marks).values(mark="", kind="pending", account_id="ACME-003"))
    assert not log.search("wang.fang@example.com", NOW.date())
    assert parties.mark_pending(log.engine, log.vault) == 1
    assert [f.account_id for f in log.search("wang.fang@example.com", NOW.date())] == ["ACME-003"]
    assert parties.mark_pending(log.engine, log.vault) == 0, "once"


def test_a_queued_job_whose_account_was_erased_meanwhile_is_dropped_unsent(world: Any) -> None:  # noqa: F811
    from test_pipeline import email_job

    from worker.jobs.parse import parse_job
    from worker.queue.envelope import envelope_for

    data = email_job()
    parsed = parse_job(data, profiles(None)).job
    assert parsed is not None
    JobBook(world.log).accept_job(parsed.job_id, parsed.invoice.id, parsed.debtor.account_id,
                         json.dumps(data, ensure_ascii=False), NOW)  # accepted and queued...
    later = NOW + timedelta(days=7 * 365)
    erased = records_of(world.log, None, None, profiles(None), 6).erase(parsed.debtor.account_id, "request 81", later,
                                                                  by="li.na")
    assert erased.done, erased.message  # ...and erased before a worker took it
    assert world.handle(dict(envelope_for(parsed))) == "skipped"
    assert world.mail.messages() == []
    assert [r["kind"] for r in world.log.history(account=parsed.debtor.account_id)][-1] == "erasure"
