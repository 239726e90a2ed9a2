"""Events from billing and people, on real SQLite/PostgreSQL and a real redis-server:
recorded with who and when, applied to the agenda at once, read back by the worker."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sealed import MASTER_KEY

from worker.contact_log import Claim, ContactLog
from worker.events import EventError, Events
from worker.jobs.book import JobBook
from worker.queue.agenda import Agenda

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=3)


@pytest.fixture()
def agenda(redis_client: Any) -> Agenda:
    return Agenda(redis_client)


def payload(invoice: str, step: str) -> dict[str, Any]:
    return {"job": {"job_id": f"{invoice}/{step}", "invoice": {"id": invoice}}, "attempt": 0}


def schedule(agenda: Agenda, invoice: str, *steps: str, at: datetime = LATER) -> None:
    agenda.schedule_many((f"{invoice}/{step}", payload(invoice, step), at) for step in steps)


def test_paid_cancels_the_invoices_pending_reminders_and_only_those(log: ContactLog, agenda: Agenda) -> None:
    schedule(agenda, "INV-1", "pre_due_3", "due_day")
    schedule(agenda, "INV-2", "due_day")
    JobBook(log).accept_job("INV-1/pre_due_3", "INV-1", "ACME", "{}", NOW)
    applied = Events(log, agenda).paid("INV-1", NOW, by="cli:alice")
    assert applied.agenda == "2 pending reminder(s) cancelled"
    assert agenda.due_at("INV-1/due_day") is None and agenda.due_at("INV-2/due_day") == LATER
    [event] = [r for r in log.history(invoice="INV-1")]
    assert (event["kind"], event["status"], event["account_id"]) == ("invoice", "paid", "ACME")
    assert event["detail"] == {"by": "cli:alice"} and event["occurred_at"] == NOW
    assert log.facts_for("ACME", "INV-1", "INV-1/due_day", NOW).paid


def test_writing_off_ends_the_cadence_and_closes_the_escalation(log: ContactLog, agenda: Agenda) -> None:
    schedule(agenda, "INV-1", "overdue_late/2", "overdue_late/3")
    JobBook(log).accept_job("INV-1/overdue_late/1", "INV-1", "ACME", "{}", NOW)
    assert log.escalate("INV-1/overdue_late/1", "INV-1", "ACME", ["3 unanswered calls"], NOW)
    assert [row["invoice_id"] for row in log.escalations()] == ["INV-1"]
    applied = Events(log, agenda).write_off("INV-1", LATER, by="cli:carol", note="debtor insolvent")
    assert applied.agenda == "2 pending reminder(s) cancelled" and agenda.due_at("INV-1/overdue_late/3") is None
    assert log.escalations() == [], "a written-off invoice is nobody's case any more"
    facts = log.facts_for("ACME", "INV-1", "INV-1/overdue_late/3", LATER)
    assert facts.written_off and not facts.paid
    [event] = [r for r in log.history(invoice="INV-1") if r["status"] == "written-off"]
    assert event["detail"] == {"note": "debtor insolvent", "by": "cli:carol"} and event["account_id"] == "ACME"


def test_a_partial_payment_is_a_payment_not_paid(log: ContactLog, agenda: Agenda) -> None:
    schedule(agenda, "INV-1", "due_day")
    JobBook(log).accept_job("INV-1/due_day", "INV-1", "ACME", "{}", NOW)
    Events(log, agenda).paid("INV-1", NOW, by="api", amount="1200.50")
    facts = log.facts_for("ACME", "INV-1", "INV-1/due_day", NOW)
    assert not facts.paid and facts.paid_since(NOW - timedelta(days=1)) == Decimal("1200.50")
    assert facts.paid_since(NOW + timedelta(seconds=1)) == 0, "a payment before the job was accepted is in its amount"
    assert agenda.due_at("INV-1/due_day") == LATER, "the reminder stays, with the balance"


def test_an_event_for_an_invoice_the_log_has_never_seen_is_refused(log: ContactLog, agenda: Agenda) -> None:
    """A billing system's typo must not look like success: nothing is recorded, and the
    error says which invoice and how the log comes to know one."""
    from worker.events import UnknownInvoice
    events = Events(log, agenda)
    for act in (lambda: events.paid("NOPE-9", NOW, by="api"), lambda: events.paid("NOPE-9", NOW, by="api", amount="1"),
                lambda: events.dispute("NOPE-9", NOW, by="api"), lambda: events.write_off("NOPE-9", NOW, by="api"),
                lambda: events.promise("NOPE-9", date(2026, 12, 10), NOW, by="api")):
        with pytest.raises(UnknownInvoice, match="invoice NOPE-9: the contact log has no job for this invoice"):
            act()
    assert list(log.history(invoice="NOPE-9")) == []


def test_a_dispute_pauses_reminders_and_resolving_it_resumes_them(log: ContactLog, agenda: Agenda) -> None:
    schedule(agenda, "INV-1", "due_day", "overdue_early")
    JobBook(log).accept_job("INV-1/due_day", "INV-1", "ACME", "{}", NOW)
    events = Events(log, agenda)
    assert events.dispute("INV-1", NOW, by="api", note="wrong quantity").agenda == "2 pending reminder(s) paused"
    assert agenda.due_at("INV-1/due_day") is None and agenda.parked("INV-1") == 2
    assert log.facts_for("ACME", "INV-1", "x", NOW).disputed
    resumed = NOW + timedelta(days=5)
    assert events.dispute("INV-1", resumed, by="api", resolved=True).agenda == "2 reminder(s) resumed"
    assert agenda.due_at("INV-1/due_day") == resumed and agenda.parked("INV-1") == 0
    assert not log.facts_for("ACME", "INV-1", "x", resumed).disputed


def test_a_promise_holds_reminders_until_the_day_after_it(log: ContactLog, agenda: Agenda) -> None:
    schedule(agenda, "INV-1", "due_day", at=NOW + timedelta(hours=1))
    schedule(agenda, "INV-1", "overdue_late", at=datetime(2026, 12, 20, 1, 0, tzinfo=UTC))
    JobBook(log).accept_job("INV-1/due_day", "INV-1", "ACME", "{}", NOW)
    Events(log, agenda).promise("INV-1", date(2026, 12, 10), NOW, by="api")
    # the day after the promise begins first at UTC+14: 2026-12-11 00:00+14:00
    assert agenda.due_at("INV-1/due_day") == datetime(2026, 12, 10, 10, 0, tzinfo=UTC)
    assert agenda.due_at("INV-1/overdue_late") == datetime(2026, 12, 20, 1, 0, tzinfo=UTC), "later ones stay"
    assert log.facts_for("ACME", "INV-1", "x", NOW).promised_until == date(2026, 12, 10)


def test_an_opt_out_by_address_binds_every_account_and_an_opt_in_undoes_only_the_opt_out(
        log: ContactLog, agenda: Agenda) -> None:
    events = Events(log, agenda)
    events.optout(" +86 138-0013-8000 ", NOW, by="sms-reply")
    log.suppress("OTHER", "wrong@example.com", "email", "550 5.1.1", NOW, code="550")
    seen = log.facts_for("ANY", "INV-9", "x", NOW, addresses=("+8613800138000", "wrong@example.com"))
    assert seen.suppressed_addresses == {"+8613800138000"} and seen.invalid_addresses == {"wrong@example.com"}
    events.optin("+8613800138000", NOW, by="sms-reply")
    events.optin("wrong@example.com", NOW, by="sms-reply")
    seen = log.facts_for("ANY", "INV-9", "x", NOW, addresses=("+8613800138000", "wrong@example.com"))
    assert seen.suppressed_addresses == set()
    assert seen.invalid_addresses == {"wrong@example.com"}, "an address proven invalid stays suppressed"


def test_stop_replies_handled_at_once_by_several_processes_record_one_opt_out(log: ContactLog) -> None:
    url = log.engine.url.render_as_string(hide_password=False)
    # an engine each: as separate processes would have
    workers = [ContactLog.open(url, MASTER_KEY).migrate() for _ in range(8)]
    start = threading.Barrier(len(workers))

    def reply(own: ContactLog) -> bool:
        start.wait()
        return Events(own, None).optout("+8613800138000", NOW, by="sms-reply").changed

    with ThreadPoolExecutor(len(workers)) as pool:
        changed = list(pool.map(reply, workers))
    for own in workers:
        own.engine.dispose()
    assert changed.count(True) == 1, "one opt-out recorded, so one confirmation"
    assert [r["status"] for r in log.history() if r["kind"] == "suppression"] == ["suppressed"]


def test_opting_out_of_a_channel_and_ceasing(log: ContactLog, agenda: Agenda) -> None:
    events = Events(log, agenda)
    events.optout_channel("ACME", "sms", NOW, by="call-notes")
    events.cease("ACME", NOW, by="mailroom", note="letter of 2026-11-30")
    facts = log.facts_for("ACME", "INV-1", "x", NOW)
    assert facts.suppressed_channels == {"sms"} and facts.ceased


@pytest.mark.parametrize(("call", "message"), [
    (lambda e: e.paid("INV-1", NOW, by="x", amount="12,00"),
     'amount: must be a decimal string like "1200.00", got \'12,00\''),
    (lambda e: e.paid("INV-1", NOW, by="x", amount="-5"),
     'amount: must be a positive decimal string like "1200.00", got \'-5\''),
    (lambda e: e.paid(" ", NOW, by="x"), "invoice: a non-empty id expected"),
    (lambda e: e.write_off("", NOW, by="x"), "invoice: a non-empty id expected"),
    (lambda e: e.optout("12345", NOW, by="x"), "address: '12345'; an email address or an E.164 phone number"),
    (lambda e: e.optout("a@b", NOW, by="x"), "address: 'a@b' is not a valid email address"),
    (lambda e: e.optout_channel("ACME", "fax", NOW, by="x"), "channel: 'fax'; one of email, sms, voice expected"),
    (lambda e: e.promise("INV-1", date(2026, 1, 1), NOW, by="x"), "until: 2026-01-01 is in the past"),
])
def test_bad_events_are_refused_with_the_field_and_nothing_is_recorded(
        log: ContactLog, agenda: Agenda, call: Any, message: str) -> None:
    with pytest.raises(EventError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(Events(log, agenda))
    assert list(log.history()) == []


def test_a_claim_made_on_facts_older_than_a_payment_is_refused(log: ContactLog, agenda: Agenda) -> None:
    known = log.known("ACME", "INV-1", "INV-1/due_day", NOW, ("d@example.com",))
    fresh = log.known("OTHER", "INV-2", "INV-2/due_day", NOW, ("e@example.com",))
    JobBook(log).accept_job("INV-1/due_day", "INV-1", "ACME", "{}", NOW)
    Events(log, agenda).paid("INV-1", NOW, by="billing")  # arrives while the reminder is being rendered
    claim = Claim("INV-1/due_day#email", "INV-1/due_day", "INV-1", "ACME", "email", "d@example.com", "due_day",
                  "t", "v", ("r",), ("W",), ("UTC",))
    assert log.claim(claim, NOW, decision={"action": "send"}, known=known) is None
    assert log.delivery("INV-1/due_day#email") is None
    other = Claim("INV-2/due_day#email", "INV-2/due_day", "INV-2", "OTHER", "email", "e@example.com", "due_day",
                  "t", "v", ("r",), ("W",), ("UTC",))
    delivery = log.claim(other, NOW, known=fresh)
    assert delivery is not None and delivery.fresh, "news about another invoice does not stop this one"
