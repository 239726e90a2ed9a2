"""Issue 4 end to end: a registered invoice carried through its cadence by a real worker,
with the clock moved day by day — payment, promise, caps across processes, escalation."""

from __future__ import annotations

import time as wall
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from harness import WEDNESDAY_10, Harness, serving

from channels.segments import count_segments
from worker.contact_log import Claim
from worker.contact_log.kinds import Event, Kind
from worker.events import Events
from worker.users.keys import Keys

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(day: date, hour: int = 9, minute: int = 5, zone: ZoneInfo = SHANGHAI) -> datetime:
    return datetime.combine(day, time(hour, minute), zone)


def walk(harness: Harness, first: date, last: date, hour: int = 9, minute: int = 5) -> None:
    """Move the shared clock to `hour:minute` of each day in turn, letting the worker finish each."""
    day = first
    while day <= last:
        harness.stack.set_clock(local(day, hour, minute))
        harness.stack.wait_idle(timeout=60, settle=0.3)
        day += timedelta(days=1)


def sends(harness: Harness, job: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in harness.log.history(invoice=job["invoice"]["id"]) if r["kind"] == "delivery"
            and r["status"] == "sent"]


def test_a_registered_invoice_paid_on_day_3_gets_no_message_after_the_payment(harness: Harness) -> None:
    job = harness.job("2026-12-08", debtor__phone="+8613811112222", cadence="default")  # due Tuesday
    job["job_id"] = f"{job['invoice']['id']}/cadence"
    harness.run(job, at=local(date(2026, 11, 30), 10, 0))
    [registered] = [r for r in harness.log.history(invoice=job["invoice"]["id"]) if r["kind"] == "cadence"]
    planned = [s["job_id"] for s in registered["detail"]["steps"]]
    assert planned[:4] == [f"{job['invoice']['id']}/{s}" for s in ("pre_due_7/1", "pre_due_3/1", "due_day/1",
                                                                   "overdue_early/1")]
    walk(harness, date(2026, 12, 1), date(2026, 12, 10))
    before = sends(harness, job)
    assert [(r["stage"], r["occurred_at"].astimezone(SHANGHAI).date()) for r in before] == [
        ("pre_due_7", date(2026, 12, 1)), ("pre_due_3", date(2026, 12, 4)),  # Saturday's step moved to Friday
        ("due_day", date(2026, 12, 8)), ("overdue_early", date(2026, 12, 9))]
    paid_at = local(date(2026, 12, 11), 8, 0)  # day +3, before that morning's step
    harness.stack.set_clock(paid_at)
    Events(harness.log, harness.stack.agenda).paid(job["invoice"]["id"], paid_at, by="test")
    reached = harness.reminders_for(job)
    walk(harness, date(2026, 12, 11), date(2026, 12, 24))
    assert sends(harness, job) == before and harness.reminders_for(job) == reached
    assert all(r["occurred_at"] < paid_at for r in harness.log.history(invoice=job["invoice"]["id"])
               if r["kind"] == "delivery" and r["status"] == "claimed")
    assert harness.stack.agenda.client.scard(f"dunning:agenda:invoice:{job['invoice']['id']}") == 0


def test_a_written_off_invoice_gets_nothing_more(harness: Harness) -> None:
    job = harness.job("2026-12-08", debtor__phone="+8613811115555", cadence="default")
    job["job_id"] = f"{job['invoice']['id']}/cadence"
    harness.run(job, at=local(date(2026, 12, 8), 10, 0))
    walk(harness, date(2026, 12, 9), date(2026, 12, 9))
    before = sends(harness, job)
    assert [r["stage"] for r in before] == ["due_day", "overdue_early"]
    written_off = local(date(2026, 12, 9), 16, 0)
    harness.stack.set_clock(written_off)
    Events(harness.log, harness.stack.agenda).write_off(job["invoice"]["id"], written_off, by="test")
    walk(harness, date(2026, 12, 10), date(2026, 12, 24))
    assert sends(harness, job) == before
    assert harness.stack.agenda.client.scard(f"dunning:agenda:invoice:{job['invoice']['id']}") == 0
    assert job["invoice"]["id"] not in [row["invoice_id"] for row in harness.log.escalations()], "no escalation"


def test_a_promise_pauses_the_cadence_and_it_resumes_the_day_after(harness: Harness) -> None:
    job = harness.job("2026-12-08", debtor__phone="+8613811113333", cadence="default")
    job["job_id"] = f"{job['invoice']['id']}/cadence"
    harness.run(job, at=local(date(2026, 12, 7), 10, 0))
    walk(harness, date(2026, 12, 8), date(2026, 12, 9))
    count = len(sends(harness, job))
    assert count == 3  # pre_due_3 (still running at registration), due_day, overdue_early/1
    promised_at = local(date(2026, 12, 9), 16, 0)
    harness.stack.set_clock(promised_at)
    Events(harness.log, harness.stack.agenda).promise(job["invoice"]["id"], date(2026, 12, 14), promised_at, by="test")
    walk(harness, date(2026, 12, 10), date(2026, 12, 14))
    assert len(sends(harness, job)) == count, "nothing while the promise runs"
    walk(harness, date(2026, 12, 15), date(2026, 12, 16))
    resumed = sends(harness, job)[count:]
    assert resumed and resumed[0]["occurred_at"].astimezone(SHANGHAI).date() == date(2026, 12, 15)


def test_the_8th_call_in_7_days_is_deferred_even_when_other_processes_made_the_seven(harness: Harness) -> None:
    new_york = ZoneInfo("America/New_York")
    job = harness.job("2026-11-26", profile="us-consumer-3p", debtor__phone="+12125550147",
                      debtor__timezone="America/New_York", debtor__country="US", debtor__locale="en-US",
                      debtor__kind="person", debtor__consent={"email": False, "sms": False, "voice": True})
    invoice, account = job["invoice"]["id"], job["debtor"]["account_id"]
    # Seven calls this week, recorded by other worker processes (spread over stages, so no
    # stage has three unanswered ones, which would escalate instead).
    stages = ["pre_due_3", "pre_due_3", "due_day", "overdue_early", "overdue_early", "overdue_late", "overdue_late"]
    for n, stage in enumerate(stages, start=1):
        moment = datetime.combine(date(2026, 12, 1) + timedelta(days=n - 1), time(10, 0), new_york)
        claim = Claim(delivery_key=f"{invoice}/elsewhere/{n}#voice", job_id=f"{invoice}/elsewhere/{n}",
                      invoice_id=invoice, account_id=account, channel="voice", recipient="+12125550147", stage=stage,
                      template=None, template_version=None, reasons=(), rules=(), zones=())
        delivery = harness.log.claim(claim, moment)
        assert delivery is not None
        harness.log.record(Event(Kind.DELIVERY, "no-answer", delivery_id=delivery.id), moment)
    eighth = datetime.combine(date(2026, 12, 8), time(9, 30), new_york)
    harness.run(job, at=eighth)
    [decision] = [r for r in harness.log.history(invoice=invoice) if r["kind"] == "decision"]
    assert decision["status"] == "defer" and "F-CALL-7IN7" in decision["detail"]["rules"]
    assert decision["detail"]["until"] == "2026-12-08T10:00:00-05:00", "when the first of the seven leaves"
    assert not [c for c in harness.stack.sandbox.sent("Calls") if c["to"] == "+12125550147"]
    harness.stack.set_clock(datetime.combine(date(2026, 12, 8), time(10, 1), new_york))
    harness.stack.wait_idle(timeout=60)
    assert len([c for c in harness.stack.sandbox.sent("Calls") if c["to"] == "+12125550147"]) == 1


def test_three_unanswered_calls_escalate_stop_the_cadence_and_tell_the_supervisor(harness: Harness) -> None:
    job = harness.job("2026-12-08", debtor__phone="+8613811114444", cadence="default",
                      debtor__consent={"email": False, "sms": False, "voice": True})
    job["job_id"] = f"{job['invoice']['id']}/cadence"
    invoice = job["invoice"]["id"]
    harness.run(job, at=local(date(2026, 12, 8), 10, 0))
    walk(harness, date(2026, 12, 9), date(2026, 12, 24))
    calls = [c for c in harness.stack.sandbox.sent("Calls") if c["to"] == "+8613811114444"]
    assert len(calls) == 3, "overdue_early steps 1-3 call; step 4 finds three unanswered and escalates"
    [escalated] = [r for r in harness.log.history(invoice=invoice) if r["status"] == "escalated"]
    assert escalated["occurred_at"].astimezone(SHANGHAI).date() == date(2026, 12, 15)
    assert escalated["detail"]["reasons"] == ["3 unanswered calls in stage overdue_early"]
    [notice] = [m for m in harness.emails_to("supervisor@example.com") if job["invoice"]["number"] in m["Subject"]]
    assert job["invoice"]["number"] in notice["Subject"]
    body = notice.get_body(("plain",)).get_content()
    assert "3 unanswered calls in stage overdue_early" in body and body.count("voice") >= 3
    assert invoice in [row["invoice_id"] for row in harness.log.escalations()]
    assert harness.stack.agenda.client.scard(f"dunning:agenda:invoice:{invoice}") == 0


def test_a_supervisor_email_the_relay_defers_is_sent_on_a_later_try(harness: Harness) -> None:
    job = harness.job("2026-11-10", debtor__consent={"email": True, "sms": False, "voice": False})  # 22 days late
    invoice = job["invoice"]["id"]
    harness.mail.rcpt["supervisor@example.com"] = ["450 4.2.1 Mailbox busy, try later"]
    harness.run(job)
    notices = [r for r in harness.log.history(invoice=invoice) if r["kind"] == "escalation"]
    assert [(r["status"], r["error_code"]) for r in notices] == [("retry", "450")]
    assert not [m for m in harness.emails_to("supervisor@example.com") if job["invoice"]["number"] in m["Subject"]]
    harness.stack.set_clock(WEDNESDAY_10 + timedelta(minutes=31))  # the first retry is 30 minutes on
    harness.stack.wait_idle(timeout=60)
    notices = [r for r in harness.log.history(invoice=invoice) if r["kind"] == "escalation"]
    assert [r["status"] for r in notices] == ["retry", "notified"]
    [notice] = [m for m in harness.emails_to("supervisor@example.com") if job["invoice"]["number"] in m["Subject"]]
    assert "22 days past due" in notice["Subject"]
    assert [row["invoice_id"] for row in harness.log.escalations()].count(invoice) == 1


def test_ten_two_segment_texts_from_one_long_code_take_twenty_seconds(harness: Harness) -> None:
    if harness.database != "sqlite":
        pytest.skip("the bucket lives in Redis; once is enough (20 s of real time)")
    numbers = [f"+86139222200{n:02d}" for n in range(10)]
    jobs = [harness.job("2026-12-02", debtor__phone=number, debtor__consent={"email": False, "sms": True,
                                                                             "voice": False}) for number in numbers]
    started = wall.monotonic()  # the sandbox runs in this process and stamps arrivals on the same clock
    harness.run(*jobs)
    texts = sorted((m for m in harness.stack.sandbox.sent() if m["to"] in numbers), key=lambda m: m["_received"])
    assert len(texts) == 10 and all(count_segments(m["body"]).parts == 2 for m in texts)
    # Each text holds the long code for two seconds, so the k-th can go no sooner than 2k s
    # after the first could (each send may come later than its slot, never sooner).
    offsets = [m["_received"] - started for m in texts]
    assert all(offset >= 2 * k for k, offset in enumerate(offsets)), offsets
    assert offsets[-1] + 2 >= 20, "twenty segments at one per second"
    throttled = [r for r in harness.log.history() if r["kind"] == "decision" and r["status"] == "send"
                 and r["job_id"] in {j["job_id"] for j in jobs}]
    assert len(throttled) == 10, "a job waiting for its slot has claimed nothing and decided once more at most"


def test_a_stop_reply_suppresses_the_next_text_with_no_api_call_and_one_confirmation(harness: Harness) -> None:
    number = "+8613855556666"
    job = harness.job("2026-12-02", debtor__phone=number)  # due_day: SMS first, then email
    harness.stack.set_clock(WEDNESDAY_10)
    with serving(harness.log, harness.stack.env(), harness.stack.clock.now) as url:
        status, replies = harness.stack.sandbox.reply(url + "/twilio/inbound", number, "退订")
    assert status == 200 and len(replies) == 1
    harness.run(job)
    assert not [r for r in harness.stack.sandbox.requests if r.get("To") == number], "no API call to the number"
    assert len([m for m in harness.stack.sandbox.sent() if m["to"] == number]) == 1, "only the confirmation"
    [decision] = [r for r in harness.log.history(invoice=job["invoice"]["id"]) if r["kind"] == "decision"]
    assert decision["detail"]["channel"] == "email" and "S-OPTOUT" in decision["detail"]["rules"]
    assert len(harness.emails_to(job["debtor"]["email"])) == 1


def test_over_http_an_invoice_registered_then_paid_gets_nothing_after_the_payment(harness: Harness) -> None:
    """The billing API end to end: POST /v1/invoices, a real worker sending, then a payment
    over HTTP cancels the pending steps, and the worker sends nothing more."""
    import json
    import urllib.request

    from worker.users.keys import parse_scopes

    key = Keys(harness.log).create_key(f"erp-{harness.database}", parse_scopes("jobs:write,events:write"),
                                 local(date(2026, 11, 30)), "test")
    job = harness.job("2026-12-08", debtor__phone="+8613811116666")
    job["job_id"] = job["invoice"]["id"]
    harness.stack.set_clock(local(date(2026, 12, 7), 10, 0))
    env = {**harness.stack.env(), **harness.worker_env}
    with serving(harness.log, env, harness.stack.clock.now) as url:
        def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
            request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST", headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())

        assert post("/v1/invoices", job) == (202, {"accepted": [job["job_id"]], "duplicates": [], "rejected": []})
        walk(harness, date(2026, 12, 8), date(2026, 12, 8))
        before = sends(harness, job)
        assert [r["stage"] for r in before] == ["due_day"]
        paid_at = local(date(2026, 12, 8), 18, 0)
        harness.stack.set_clock(paid_at)
        status, paid = post(f"/v1/invoices/{job['invoice']['id']}/payment", {})
    assert status == 200 and paid["cancelled"], "the pending steps are named"
    reached = harness.reminders_for(job)
    walk(harness, date(2026, 12, 9), date(2026, 12, 20))
    assert sends(harness, job) == before and harness.reminders_for(job) == reached
