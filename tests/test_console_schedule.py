"""The operator's Schedule page over a real worker's agenda, both databases: the next
14 days counted by day × channel × profile with a chart, an invoice's and an account's
pending steps in the debtor's local time and UTC, pause and resume recorded with who
and why (the steps park and come back), and the forewarning email (button and CLI)."""

from __future__ import annotations

import html
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from harness import WEDNESDAY_10, Harness, serving
from test_cli import dunning
from test_console import PASSWORD, Browser

from worker.contact_log import ContactLog
from worker.local.ports import free_port
from worker.policy import profiles
from worker.users.people import People

THURSDAY_9_SHANGHAI = "2026-12-03 09:00 Thu"


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_the_schedule_counts_shows_pauses_and_forewarns(harness: Harness) -> None:
    People(harness.log).add_user("sched.op", "operator", PASSWORD, WEDNESDAY_10, by="test")
    early = harness.job("2026-12-10")  # pre_due_7 opens on Thursday 3 December: deferred to 09:00 Shanghai
    other = harness.job("2026-12-11", debtor__account_id=early["debtor"]["account_id"])  # same account, Friday
    harness.run(early, other)
    env = {**harness.stack.env(), **harness.worker_env}
    with serving(harness.log, env, harness.stack.clock.now) as url:
        person = Browser(url)
        assert person.sign_in("sched.op").status_code == 303
        page = person.get("/console/schedule")
        assert page.status_code == 200
        said = text_of(page.text)
        row = re.search(r"2026-12-03 Thu ([\d ]*)", said)
        assert row and sum(int(n) for n in row.group(1).split()) >= 1, said[:2000]
        assert '<svg role="img"' in page.text and 'class="bar email"' in page.text
        assert "<title>" in page.text and "2026-12-03:" in said  # the chart's text for screen readers

        invoice = early["invoice"]["id"]
        steps = text_of(person.get(f"/console/schedule?target={invoice}").text)
        assert f"Pending steps of invoice {invoice}" in steps
        assert f"{THURSDAY_9_SHANGHAI} Asia/Shanghai" in steps and "2026-12-03 01:00" in steps
        assert "send by email (pre_due_7)" in steps
        account = text_of(person.get(f"/console/schedule?target={early['debtor']['account_id']}").text)
        assert invoice in account and other["invoice"]["id"] in account and "2026-12-04 09:00 Fri" in account

        paused = person.post("/console/schedule/pause", {"target": invoice, "reason": "customer <b>called</b>"},
                             csrf_from=f"/console/schedule?target={invoice}")
        assert paused.status_code == 200 and "paused; nothing is sent until it is resumed" in text_of(paused.text)
        assert "paused by an operator until resumed" in text_of(paused.text)
        assert "dispute" not in text_of(paused.text), "nothing is disputed"
        assert "<b>called</b>" not in paused.text
        [event] = [r for r in harness.log.history(invoice=invoice) if r["status"] == "paused"]
        assert event["detail"] == {"reason": "customer <b>called</b>", "by": "console:sched.op"}
        resumed = person.post("/console/schedule/resume", {"target": invoice},
                              csrf_from=f"/console/schedule?target={invoice}")
        assert "reminders resume" in text_of(resumed.text)
        harness.stack.wait_idle()  # resumed steps come due at once, and the worker defers them to Thursday again
        assert "send by email" in text_of(person.get(f"/console/schedule?target={invoice}").text)
        refused = person.post("/console/schedule/pause", {"target": "NOPE-1", "reason": "x"},
                              csrf_from="/console/schedule")
        assert refused.status_code == 404

        before = len(harness.mail.messages())
        sent = person.post("/console/schedule/forewarn", {"to": "ops@example.com"}, csrf_from="/console/schedule")
        assert sent.status_code == 200 and "was e-mailed to ops@example.com" in text_of(sent.text)
    cli = dunning("forewarn", "--to", "ops@example.com", env=env)
    assert cli.returncode == 0, cli.stderr
    notes = [m for m in harness.mail.messages()[before:] if m["To"] == "ops@example.com"]
    assert len(notes) == 2 and all("planned for 2026-12-03" in m["Subject"] for m in notes)
    body = notes[0].get_body(("plain",)).get_content()
    assert re.search(r"email\s+default\s+\d+", body), body
    assert early["debtor"]["email"] not in body


def test_an_operators_pause_stops_a_send_until_resumed(harness: Harness) -> None:
    from worker.events import Events

    job = harness.job("2026-12-02", debtor__phone="+8613900139555")
    events = Events(harness.log, harness.stack.agenda)
    # Paused before billing sent anything: the account's event is enough.
    events.pause(f"account:{job['debtor']['account_id']}", WEDNESDAY_10, by="op", reason="talking to them")
    harness.run(job)
    assert harness.texts_to("+8613900139555", "") == [] and harness.emails_to(job["debtor"]["email"]) == []
    decisions = [r["detail"]["reasons"] for r in harness.log.history(job=job["job_id"]) if r["kind"] == "decision"]
    assert decisions[-1] == ["paused by an operator"]
    events.pause(f"account:{job['debtor']['account_id']}", WEDNESDAY_10, by="op", reason="", resume=True)
    harness.stack.wait_idle()
    assert len(harness.texts_to("+8613900139555", job["invoice"]["number"])) == 1


def test_with_redis_down_the_schedule_says_so_and_the_rest_of_the_console_works(log: ContactLog) -> None:
    """No traceback, no 500: the page that needs the queue is a 503 page saying it is
    unavailable, with the navigation; pages that read only the log keep working."""
    People(log).add_user("sched.op", "operator", PASSWORD, WEDNESDAY_10, by="test")
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with serving(log, {"DUNNING_SECRET_KEY": "s" * 40, "DUNNING_REDIS_URL": nowhere}, lambda: WEDNESDAY_10) as url:
        person = Browser(url)
        assert person.sign_in("sched.op").status_code == 303
        down = person.get("/console/schedule")
        assert down.status_code == 503 and "The queue is unavailable" in down.text, down.text[:500]
        assert "Traceback" not in down.text and '<a href="/console/templates">Templates</a>' in down.text
        assert person.get("/console/templates").status_code == 200
        assert person.get("/console/escalations").status_code == 200


def test_an_empty_agenda_says_nothing_is_scheduled(log: ContactLog, redis_server: Any, redis_client: Any) -> None:
    People(log).add_user("sched.op", "operator", PASSWORD, WEDNESDAY_10, by="test")
    env = {"DUNNING_SECRET_KEY": "s" * 40, "DUNNING_REDIS_URL": redis_server.url}
    with serving(log, env, lambda: WEDNESDAY_10) as url:
        person = Browser(url)
        assert person.sign_in("sched.op").status_code == 303
        page = person.get("/console/schedule")
        assert page.status_code == 200 and "Nothing is scheduled in the next 14 days" in text_of(page.text)
        assert "<svg" not in page.text and "largest day" not in page.text


def test_jobs_read_ahead_at_start_make_the_first_page_parse_nothing(harness: Harness, monkeypatch: Any) -> None:
    """`serve` reads the agenda's jobs ahead (`forecast.warm`): the first Schedule page an
    operator opens then parses no job, and says what a cold one says."""
    from worker.pipeline import forecast

    harness.run(harness.job("2026-12-10"), harness.job("2026-12-11"))
    agenda, now = harness.stack.agenda, harness.stack.clock.now()
    cold = forecast.plan(agenda, harness.log, profiles(None), now)
    assert len(cold.steps) >= 2  # the stack's agenda may hold earlier tests' steps too
    forecast._PARSED.clear()
    assert forecast.warm(agenda, harness.log, profiles(None), now) == len(cold.steps)

    def no_parsing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a job parsed again")

    monkeypatch.setattr(forecast, "parse_job", no_parsing)
    assert forecast.plan(agenda, harness.log, profiles(None), now) == cold


def test_an_invoice_covered_by_partial_payments_is_forecast_as_the_worker_decides(harness: Harness) -> None:
    """The forecast holds what the worker holds before `decide` (`pipeline/standing.py`):
    partial payments since the job was accepted that cover the invoice make it paid — no
    send is forecast, and the worker, when the step comes due, sends none."""
    from worker.events import Events
    from worker.pipeline import forecast

    job = harness.job("2026-12-10")  # pre_due_7: deferred to Thursday 09:00 Shanghai
    harness.run(job)
    invoice, now = job["invoice"]["id"], harness.stack.clock.now()
    [before] = forecast.pending_of(harness.stack.agenda, harness.log, profiles(None), [invoice], now)
    assert before.action == "send"
    events = Events(harness.log, harness.stack.agenda)
    half = (Decimal(job["invoice"]["amount_due"]) / 2).quantize(Decimal("0.01"))
    events.paid(invoice, now, by="test", amount=str(half))
    [partly] = forecast.pending_of(harness.stack.agenda, harness.log, profiles(None), [invoice], now)
    assert partly.action == "send", "half is still owed"
    events.paid(invoice, now, by="test", amount=str(Decimal(job["invoice"]["amount_due"]) - half))
    [covered] = forecast.pending_of(harness.stack.agenda, harness.log, profiles(None), [invoice], now)
    assert covered.action == "skip" and covered.channel is None, covered
    harness.stack.set_clock(datetime.fromisoformat("2026-12-03T09:05:00+08:00"))  # the step comes due
    harness.stack.wait_idle(timeout=60)
    assert harness.reminders_for(job) == 0
    decisions = [r["status"] for r in harness.log.history(job=job["job_id"]) if r["kind"] == "decision"]
    assert decisions[-1] == "skip", decisions
