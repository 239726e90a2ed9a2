"""The worker end to end, for real: `dunning worker` as a separate process, redis-server,
an aiosmtpd server, the Twilio sandbox, and the contact log on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime

from harness import WEDNESDAY_10, Harness
from test_cli import dunning

from worker.contact_log.kinds import Event, Kind
from worker.jobs.book import JobBook
from worker.jobs.intake import submit
from worker.jobs.parse import parse_job
from worker.messages.library import Library
from worker.policy import profiles
from worker.queue.broker import enqueue_many
from worker.queue.envelope import envelope_for


def test_email_sms_and_voice_are_delivered_and_logged(harness: Harness) -> None:
    email = harness.job("2026-12-08")  # pre_due_7: email
    sms = harness.job("2026-12-02", debtor__phone="+8613900139000")  # due_day: sms first
    voice = harness.job("2026-11-30", debtor__phone="+8613700137000")  # overdue_early: voice first
    harness.run(email, sms, voice)
    [message] = harness.emails_to(email["debtor"]["email"])
    assert "将于 2026年12月8日 到期" in message["Subject"]
    assert harness.events(email) == [("delivery", "claimed", "email", None), ("delivery", "sent", "email", None)]
    [text_message] = harness.texts_to("+8613900139000", sms["invoice"]["number"])
    assert "今日到期" in text_message["body"] and text_message["_form"]["From"] == "+15005550006"
    assert 0 < int(text_message["_form"]["ValidityPeriod"]) <= 5400, "clamped to the window ending 11:30"
    calls = [c for c in harness.stack.sandbox.sent("Calls") if voice["invoice"]["number"] in c["_form"]["Twiml"]]
    assert len(calls) == 1 and "<Say language=\"cmn-CN\"" in calls[0]["_form"]["Twiml"]
    sent = [r for r in harness.log.history(invoice=voice["invoice"]["id"]) if r["status"] == "sent"]
    assert sent[0]["provider_message_id"] == calls[0]["sid"] and sent[0]["template"] == "zh-CN/overdue_early.voice.j2"
    assert harness.log.template_source(sent[0]["template_version"]) is not None
    kept = dunning("log", "template", sent[0]["template_version"], env={**harness.stack.env(), **harness.worker_env})
    shipped = (harness.templates / "zh-CN" / "overdue_early.voice.j2").read_text(encoding="utf-8")
    assert kept.returncode == 0 and kept.stdout == shipped, "the source the call was rendered from"
    unknown = dunning("log", "template", "ab" * 32, env={**harness.stack.env(), **harness.worker_env})
    assert unknown.returncode == 1 and "no template version" in unknown.stderr
    decisions = [r for r in harness.log.history(invoice=voice["invoice"]["id"]) if r["kind"] == "decision"]
    assert decisions[0]["detail"]["rules"] == ["W-BIZ", "W-LEGAL"]



def test_the_worker_logs_one_line_per_reminder_without_personal_data(harness: Harness) -> None:
    job = harness.job("2026-12-08", debtor__name="Zhang Wei-Logline")
    harness.run(job)
    log_text = (harness.stack.directory / "worker.log").read_text(errors="replace")
    lines = [json.loads(line[line.index("{"):]) for line in log_text.splitlines()
             if "[dunning.reminder]" in line and job["job_id"] in line]
    assert lines and lines[0]["outcome"] == "sent" and lines[0]["channel"] == "email", lines
    assert set(lines[0]) == {"job_id", "outcome", "channel", "duration_ms"} and lines[0]["duration_ms"] >= 0
    assert job["debtor"]["email"] not in log_text and "Logline" not in log_text, "no personal data in the log"

def test_smtp_451_then_success(harness: Harness) -> None:
    job = harness.job("2026-12-08")
    harness.mail.data = ["451 4.3.0 Try again later"]
    harness.run(job)
    assert len(harness.emails_to(job["debtor"]["email"])) == 1
    assert harness.events(job)[-1] == ("delivery", "sent", "email", None)


def test_an_invalid_mailbox_moves_to_the_next_channel(harness: Harness) -> None:
    job = harness.job("2026-12-04", debtor__preferred_channel="email", debtor__phone="+8613500135000")
    harness.mail.rcpt[job["debtor"]["email"]] = ["550 5.1.1 No such user"]
    harness.run(job)
    assert harness.emails_to(job["debtor"]["email"]) == []
    assert harness.events(job) == [("delivery", "claimed", "email", None), ("delivery", "failed", "email", "550"),
                                   ("suppression", "suppressed", None, "550"),
                                   ("delivery", "claimed", "sms", None), ("delivery", "sent", "sms", None)]
    assert len(harness.texts_to("+8613500135000", job["invoice"]["number"])) == 1


def test_twilio_429_then_success(harness: Harness) -> None:
    job = harness.job("2026-12-02", debtor__phone="+8613600136000")
    harness.stack.sandbox.script.failures = [{"status": 429, "retry_after": 0.3}]
    harness.run(job)
    assert len(harness.texts_to("+8613600136000", job["invoice"]["number"])) == 1
    assert harness.events(job)[-1] == ("delivery", "sent", "sms", None)


def test_21211_is_permanent_and_email_takes_over(harness: Harness) -> None:
    job = harness.job("2026-12-02", debtor__phone="+15005550001")
    harness.run(job)
    assert [e for e in harness.events(job) if e[1] != "claimed"] == [
        ("delivery", "failed", "sms", "21211"), ("suppression", "suppressed", None, "21211"),
        ("delivery", "sent", "email", None)]
    assert len(harness.emails_to(job["debtor"]["email"])) == 1


def test_the_same_job_twice_is_one_message(harness: Harness) -> None:
    job = harness.job("2026-12-08")
    harness.run(job, job)
    parsed = parse_job(job, profiles(None), "test").job
    assert parsed is not None
    enqueue_many(harness.stack.broker, [envelope_for(parsed)] * 3)  # and redelivered behind intake's back
    harness.stack.wait_idle()
    assert len(harness.emails_to(job["debtor"]["email"])) == 1
    assert [e[1] for e in harness.events(job)] == ["claimed", "sent"]


def test_a_template_error_fails_that_job_only_and_sends_nothing(harness: Harness) -> None:
    # A French template published in the log, while the worker runs: it notices within a second.
    Library(harness.log).seed_templates(
        {"fr-FR/due_day.sms.j2": "Bonjour {{ debtor.name }}, {{ invoice.montant }} est dû."}, WEDNESDAY_10, by="test")
    time.sleep(1.2)
    bad = harness.job("2026-12-02", debtor__locale="fr-FR", debtor__phone="+8613100131000")
    good = harness.job("2026-12-02", debtor__phone="+8613200132000")
    harness.run(bad, good)
    assert harness.texts_to("+8613100131000", "") == []
    [failure] = [r for r in harness.log.history(invoice=bad["invoice"]["id"]) if r["status"] == "failed"]
    assert failure["error_code"] == "template"
    assert "fr-FR/due_day.sms.j2:1: undefined variable" in failure["error_text"] and "montant" in failure["error_text"]
    letters = [d for d in harness.log.dead_letters() if d["job_id"] == bad["job_id"]]
    assert letters and letters[0]["origin"] == "template" and "montant" in letters[0]["reason"]
    assert len(harness.texts_to("+8613200132000", good["invoice"]["number"])) == 1


def test_deferred_jobs_wait_in_the_agenda_and_are_re_decided(harness: Harness) -> None:
    saturday = datetime.fromisoformat("2026-12-05T10:00:00+08:00")
    job = harness.job("2026-12-10")  # pre_due_7 window opens Thursday 3 Dec; Saturday → Monday
    harness.run(job, at=saturday)
    assert harness.emails_to(job["debtor"]["email"]) == []
    assert harness.stack.agenda.pending() >= 1
    harness.log.record(Event(Kind.INVOICE, "paid", invoice_id=job["invoice"]["id"],
                             account_id=job["debtor"]["account_id"]), saturday)
    harness.stack.set_clock(datetime.fromisoformat("2026-12-07T09:05:00+08:00"))
    harness.stack.wait_idle()
    assert harness.emails_to(job["debtor"]["email"]) == [], "paid over the weekend: re-checked on Monday"
    decisions = [(r["status"], (r["detail"] or {}).get("reasons")) for r in harness.log.history(
        invoice=job["invoice"]["id"]) if r["kind"] == "decision"]
    assert decisions[0][0] == "defer" and decisions[-1] == ("skip", ["invoice paid"])


def test_invalid_jobs_are_dead_lettered_with_their_reasons(harness: Harness) -> None:
    from worker.jobs.parse import read_jobs

    bad = harness.job(debtor__phone="+86 138")
    result = submit(read_jobs(json.dumps(bad).encode() + b"\n{oops\n", profiles(None)), JobBook(harness.log),
                    profiles(None), harness.stack.broker, WEDNESDAY_10)
    assert result.accepted == 0 and len(result.rejected) == 2
    letters = {d["origin"]: d for d in harness.log.dead_letters() if d["origin"].startswith("intake line")}
    assert "debtor.phone: '+86 138' is not a valid phone number" in letters["intake line 1"]["reason"]
    assert letters["intake line 2"]["payload"] == "{oops"


def test_a_worker_killed_mid_batch_delivers_every_job_exactly_once(harness: Harness) -> None:
    jobs = [harness.job("2026-12-08") for _ in range(24)]
    harness.stack.set_clock(WEDNESDAY_10)
    harness.mail.gate.clear()  # every SMTP transaction now waits at RCPT: the worker is mid-send
    submit([parse_job(job, profiles(None), "test") for job in jobs], JobBook(harness.log), profiles(None),
           harness.stack.broker, WEDNESDAY_10)
    deadline = time.monotonic() + 30
    while harness.mail.waiting < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert harness.mail.waiting >= 4, "the worker should be blocked sending"
    [worker] = harness.stack.workers
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    harness.stack.workers.clear()
    harness.mail.gate.set()
    time.sleep(0.5)
    harness.stack.start_worker(processes=1, threads=4, extra_env=harness.worker_env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(len(harness.emails_to(j["debtor"]["email"])) for j in jobs) < 24:
        time.sleep(0.2)
    harness.stack.wait_idle()
    counts = [len(harness.emails_to(job["debtor"]["email"])) for job in jobs]
    assert counts == [1] * 24
    claims = [r for job in jobs for r in harness.log.history(account=job["debtor"]["account_id"])
              if r["kind"] == "delivery" and r["status"] == "claimed"]
    again = [r for r in claims if (r["detail"] or {}).get("attempt") == 2]
    assert len(again) >= 4, "each email in flight when the worker died is claimed again: a second attempt"
    assert len(claims) == 24 + len(again)
    verdict = harness.log.verify()
    assert verdict.intact, "a worker killed mid-transaction leaves the chain whole"


def test_a_partial_payment_lowers_the_amount_the_next_reminder_states(harness: Harness) -> None:
    from worker.events import Events

    saturday = datetime.fromisoformat("2026-12-05T10:00:00+08:00")
    job = harness.job("2026-12-10", invoice__amount_due="12800.00")  # deferred from Saturday to Monday
    harness.run(job, at=saturday)
    Events(harness.log, harness.stack.agenda).paid(job["invoice"]["id"], saturday, by="billing", amount="2800.00")
    harness.stack.set_clock(datetime.fromisoformat("2026-12-07T09:05:00+08:00"))
    harness.stack.wait_idle()
    [text_message] = harness.texts_to(job["debtor"]["phone"], job["invoice"]["number"])  # pre_due_3 on Monday: SMS
    assert "¥10,000.00" in text_message["body"] and "12,800" not in text_message["body"]


def test_a_dispute_parks_the_reminder_and_resolving_it_sends_it(harness: Harness) -> None:
    from worker.events import Events

    saturday = datetime.fromisoformat("2026-12-05T10:00:00+08:00")
    monday = datetime.fromisoformat("2026-12-07T09:05:00+08:00")
    job = harness.job("2026-12-10")
    harness.run(job, at=saturday)
    events = Events(harness.log, harness.stack.agenda)
    assert events.dispute(job["invoice"]["id"], saturday, by="billing").agenda == "1 pending reminder(s) paused"
    harness.stack.set_clock(monday)
    harness.stack.wait_idle()
    assert harness.reminders_for(job) == 0
    events.dispute(job["invoice"]["id"], monday, by="billing", resolved=True)
    harness.stack.wait_idle()
    assert harness.reminders_for(job) == 1


def test_an_address_opted_out_gets_nothing_whatever_account_it_comes_with(harness: Harness) -> None:
    from worker.events import Events

    job = harness.job("2026-12-08")
    Events(harness.log, harness.stack.agenda).optout(job["debtor"]["email"].upper(), WEDNESDAY_10, by="unsubscribe")
    harness.run(job)
    assert harness.emails_to(job["debtor"]["email"]) == []
    [decision] = [r for r in harness.log.history(invoice=job["invoice"]["id"]) if r["kind"] == "decision"]
    assert decision["status"] == "skip" and decision["detail"]["rules"] == ["S-OPTOUT"]


def test_an_email_whose_data_got_no_reply_is_sent_once_more_and_recorded(harness: Harness) -> None:
    """RFC 5321 §6.1: data without a reply is not delivered. The delivery is recorded
    `unknown`, then sent once more after the claim's lease with the same Message-ID,
    as a second attempt; here the server had not kept it, so the debtor gets one."""
    job = harness.job(debtor__preferred_channel="email")
    harness.mail.drop_after_data.add(job["debtor"]["email"])
    harness.run(job)
    harness.stack.wait_idle(timeout=60)
    statuses = [(r["status"], (r["detail"] or {}).get("attempt")) for r in harness.log.history(
        account=job["debtor"]["account_id"]) if r["kind"] == "delivery"]
    assert statuses == [("claimed", None), ("unknown", None), ("claimed", 2), ("sent", None)], [
        (r["kind"], r["status"], r["channel"], r["detail"]) for r in harness.log.history(
            account=job["debtor"]["account_id"])]
    [mail] = harness.emails_to(job["debtor"]["email"])
    assert mail["Message-ID"].startswith("<")
