"""Webhooks to the billing system, from the log to a real endpoint on loopback that
verifies them with the Standard Webhooks reference library: which events are
reported, each once, none lost; delivered once; retried after a 500 and a dropped
connection with backoff; in order per invoice; stopped by a 410; given up after three
days; every attempt in the chained log. Both databases."""

from __future__ import annotations

import base64
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fakes.webhooks import DROP, Receiver
from sealed import MASTER_KEY
from sqlalchemy import select

from worker.contact_log import Claim, ContactLog
from worker.contact_log.kinds import DeliveryStatus, Event, InvoiceStatus, Kind
from worker.db.schema import webhooks
from worker.http import openapi
from worker.settings import parse_webhook_secret as parse_secret
from worker.webhooks import outbox as outbox_module
from worker.webhooks.dispatcher import Dispatcher, Endpoint
from worker.webhooks.outbox import Outbox

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def claim(invoice: str = "INV-1", channel: str = "email", recipient: str = "zhang.wei@example.com") -> Claim:
    return Claim(f"{invoice}/due_day#{channel}", f"{invoice}/due_day", invoice, "ACME-001", channel, recipient,
                 "due_day", f"en-US/due_day.{channel}.j2", "ab" * 32, ("stage due_day: email",),
                 ("W-BIZ", "W-LEGAL"), ("Asia/Shanghai",))


def sent(log: ContactLog, invoice: str = "INV-1", at: datetime = NOW, **kwargs: str) -> int:
    """A reminder claimed and sent, as the pipeline records it."""
    delivery = log.claim(claim(invoice, **kwargs), at)
    assert delivery is not None
    log.record(Event(Kind.DELIVERY, DeliveryStatus.SENT, delivery_id=delivery.id, provider="smtp",
                     provider_message_id=f"<{invoice}@dunning>"), at)
    return delivery.id


def outbox(log: ContactLog) -> list[tuple[str, str, str | None]]:
    with log.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(webhooks.c.type, webhooks.c.state, webhooks.c.invoice_id)
                                               .order_by(webhooks.c.event_id))]


def attempts(log: ContactLog) -> list[tuple[str, str | None, int]]:
    return [(r["status"], r["error_code"], r["detail"]["attempt"]) for r in log.history() if r["kind"] == "webhook"]


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as running:
        yield running


@pytest.fixture()
def reporting(log: ContactLog, receiver: Receiver) -> ContactLog:
    """A log whose endpoint has looked once: it is told what is recorded from now on."""
    assert Outbox(log).collect(receiver.url, NOW) == 0
    return log


def conforms(payload: dict[str, Any]) -> bool:
    """Whether a body is what `/v1/openapi.json` says webhooks are (its `webhooks` section)."""
    schemas: dict[str, Any] = {}
    openapi.webhooks(schemas)
    return jsonschema_rs.Draft202012Validator({"$ref": "#/components/schemas/WebhookMessage",
                                               "components": {"schemas": schemas}}).is_valid(payload)


def dispatcher(log: ContactLog, receiver: Receiver, clock: Clock) -> Dispatcher:
    return Dispatcher(Outbox(log), Endpoint(receiver.url, parse_secret(SECRET)), clock, time.time, rng=random.Random(7))


def test_each_reported_event_gets_one_outbox_row_and_others_none(reporting: ContactLog, receiver: Receiver) -> None:
    log = reporting
    delivery = sent(log, "INV-1")
    log.record(Event(Kind.DELIVERY, "delivered", delivery_id=delivery, provider="twilio",
                     detail={"callback": True}), NOW)
    sms = sent(log, "INV-2", channel="sms", recipient="+8613800138000")
    log.record(Event(Kind.DELIVERY, "sent", delivery_id=sms, provider="twilio", detail={"callback": True}), NOW)
    log.record(Event(Kind.DELIVERY, "undelivered", delivery_id=sms, provider="twilio", error_code="30003",
                     detail={"callback": True}), NOW)
    log.record(Event(Kind.DECISION, "skip", job_id="INV-3/due_day", invoice_id="INV-3", account_id="ACME-001",
                     detail={"action": "skip", "reasons": ["invoice paid"], "rules": ["S-PAID"], "zones": []}), NOW)
    log.record(Event(Kind.DECISION, "defer", job_id="INV-3/due_day", invoice_id="INV-3", account_id="ACME-001",
                     detail={"action": "defer", "reasons": ["weekend"], "rules": ["W-WEEKEND"], "zones": []}), NOW)
    log.record(Event(Kind.INVOICE, InvoiceStatus.PAID, invoice_id="INV-3", account_id="ACME-001"), NOW)
    assert log.escalate("INV-4/final", "INV-4", "ACME-001", ["third attempt failed"], NOW)
    assert Outbox(log).collect(receiver.url, NOW) == 6
    assert Outbox(log).collect(receiver.url, NOW) == 0  # each once
    assert outbox(log) == [("reminder.sent", "pending", "INV-1"), ("reminder.delivered", "pending", "INV-1"),
                           ("reminder.sent", "pending", "INV-2"), ("reminder.failed", "pending", "INV-2"),
                           ("reminder.suppressed", "pending", "INV-3"), ("invoice.escalated", "pending", "INV-4")]


def test_what_is_recorded_while_no_dispatcher_runs_is_told_later_and_a_rollback_never(
        reporting: ContactLog, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "WINDOW", 5)
    with pytest.raises(RuntimeError), reporting.locked() as conn:
        reporting.record(Event(Kind.INVOICE, InvoiceStatus.ESCALATED, invoice_id="INV-9", account_id="A"), NOW, conn)
        raise RuntimeError("the transaction rolls back")
    for n in range(12):  # the worker is down meanwhile: more than one window of events
        sent(reporting, f"INV-{n}")
    hooks = dispatcher(reporting, receiver, Clock(NOW))
    while hooks.step() == 0.0:
        pass
    hooks.step()
    assert sorted(p["data"]["invoice_id"] for p in receiver.payloads()) == sorted(f"INV-{n}" for n in range(12))


def test_a_new_endpoint_is_told_what_happens_from_when_it_first_looks(log: ContactLog, receiver: Receiver) -> None:
    sent(log, "INV-OLD")
    assert Outbox(log).collect(receiver.url, NOW) == 0
    sent(log, "INV-NEW")
    assert Outbox(log).collect(receiver.url, NOW) == 1 and [i for _t, _s, i in outbox(log)] == ["INV-NEW"]


def test_two_dispatchers_collect_each_event_once(reporting: ContactLog, receiver: Receiver) -> None:
    for n in range(40):
        sent(reporting, f"INV-{n}")
    other = ContactLog(reporting.engine)
    with ThreadPoolExecutor(2) as pool:
        made = list(pool.map(lambda log: Outbox(log).collect(receiver.url, NOW), [reporting, other]))
    assert sum(made) == 40 and len(outbox(reporting)) == 40


def test_a_webhook_is_delivered_once_signed_with_masked_data_and_no_content(reporting: ContactLog,
                                                                            receiver: Receiver) -> None:
    sent(reporting, "INV-1")
    hooks = dispatcher(reporting, receiver, Clock(NOW))
    assert hooks.step() > 0
    assert hooks.step() > 0 and len(receiver.received) == 1  # nothing more to send
    [payload] = receiver.payloads()
    assert payload["type"] == "reminder.sent"
    data = payload["data"]
    assert data["job_id"] == "INV-1/due_day" and data["invoice_id"] == "INV-1" and data["channel"] == "email"
    assert data["status"] == "sent" and data["recipient"] == "z***@example.com"
    assert data["rules"] == ["W-BIZ", "W-LEGAL"] and data["reasons"] == ["stage due_day: email"]
    assert datetime.fromisoformat(data["occurred_at"]) == NOW
    assert "zhang.wei" not in receiver.received[0].body.decode()
    assert conforms(payload) and not conforms({**payload, "type": "reminder.lost"})
    assert outbox(reporting) == [("reminder.sent", "delivered", "INV-1")]
    assert attempts(reporting) == [("delivered", "http-200", 1)]
    assert reporting.verify().intact  # the attempt is chained like any event


def test_retried_after_a_500_and_a_dropped_connection_with_backoff(reporting: ContactLog, receiver: Receiver) -> None:
    sent(reporting, "INV-1")
    receiver.script = [500, DROP]
    clock = Clock(NOW)
    hooks = dispatcher(reporting, receiver, clock)
    hooks.step()
    hooks.step()
    assert len(receiver.received) == 1  # not retried at once: it waits its backoff
    clock.moment += timedelta(seconds=7)
    hooks.step()
    clock.moment += timedelta(seconds=13)
    hooks.step()
    assert [r.answer for r in receiver.received] == [500, DROP, 200]
    assert len(set(receiver.ids())) == 1 and len({r.body for r in receiver.received}) == 1  # the same message
    assert len(receiver.payloads("reminder.sent")) == 1
    assert attempts(reporting) == [("retry", "http-500", 1), ("retry", "no-answer", 2), ("delivered", "http-200", 3)]


def test_an_invoices_webhooks_go_in_order(reporting: ContactLog, receiver: Receiver) -> None:
    delivery = sent(reporting, "INV-1")
    reporting.record(Event(Kind.DELIVERY, "delivered", delivery_id=delivery, provider="smtp",
                           detail={"callback": True}), NOW)
    sent(reporting, "INV-2")
    receiver.for_invoice = {"INV-1": [503]}
    clock = Clock(NOW)
    hooks = dispatcher(reporting, receiver, clock)
    hooks.step()  # INV-1's sent (503) and INV-2's sent; INV-1's delivered waits behind its sent
    assert sorted(p["data"]["invoice_id"] for p in receiver.payloads()) == ["INV-2"]
    clock.moment += timedelta(seconds=10)
    hooks.step()
    hooks.step()
    assert [p["type"] for p in receiver.payloads() if p["data"]["invoice_id"] == "INV-1"] == [
        "reminder.sent", "reminder.delivered"]
    assert all(conforms(p) for p in receiver.payloads())


def test_a_410_stops_the_endpoint_until_it_is_resumed(reporting: ContactLog, receiver: Receiver) -> None:
    delivery = sent(reporting, "INV-1")
    reporting.record(Event(Kind.DELIVERY, "delivered", delivery_id=delivery, provider="smtp",
                           detail={"callback": True}), NOW)  # waits behind the sent one: dropped with it
    receiver.script = [410]
    clock = Clock(NOW)
    hooks = dispatcher(reporting, receiver, clock)
    hooks.step()
    sent(reporting, "INV-2")
    clock.moment += timedelta(hours=1)
    hooks.step()
    hooks.step()
    assert len(receiver.received) == 1
    assert Outbox(reporting).endpoint_stopped(receiver.url) is not None
    assert outbox(reporting) == [("reminder.sent", "stopped", "INV-1"), ("reminder.delivered", "stopped", "INV-1")]
    # and nothing is kept for INV-2, recorded while the endpoint was stopped
    assert attempts(reporting) == [("stopped", "http-410", 1)]
    assert Outbox(reporting).resume_endpoint(receiver.url, clock.moment, by="ops")
    sent(reporting, "INV-3")
    hooks.step()
    assert [p["data"]["invoice_id"] for p in receiver.payloads()] == ["INV-3"]


def test_given_up_three_days_after_the_event(reporting: ContactLog, receiver: Receiver) -> None:
    sent(reporting, "INV-1")
    receiver.then = 500
    clock = Clock(NOW)
    hooks = dispatcher(reporting, receiver, clock)
    while clock.moment < NOW + timedelta(days=4):
        hooks.step()
        clock.moment += timedelta(minutes=30)
    tried = attempts(reporting)
    assert tried[-1][0] == "failed" and {status for status, _code, _n in tried[:-1]} == {"retry"}
    assert 15 <= len(tried) <= 30  # about half a day of doubling, then every ~6 h
    assert outbox(reporting) == [("reminder.sent", "failed", "INV-1")]
    last = [r for r in reporting.history() if r["kind"] == "webhook"][-1]
    assert NOW + timedelta(days=2) < last["occurred_at"] <= NOW + timedelta(days=3)
    assert len(receiver.received) == len(tried)


def test_the_cli_says_where_webhooks_stand_and_resumes_a_stopped_endpoint(tmp_path: Path,
                                                                            receiver: Receiver) -> None:
    from test_cli import dunning

    url = f"sqlite:///{tmp_path}/dunning.db"
    env = {"DUNNING_DATABASE_URL": url, "DUNNING_WEBHOOK_URL": receiver.url, "DUNNING_WEBHOOK_SECRET": SECRET}
    log = ContactLog.open(url, MASTER_KEY).migrate()
    Outbox(log).collect(receiver.url, NOW)
    sent(log, "INV-1")
    sent(log, "INV-2")
    receiver.for_invoice = {"INV-1": [410]}
    dispatcher(log, receiver, Clock(NOW)).step()
    status = dunning("webhooks", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "endpoint: 127.0.0.1: stopped since" in status.stdout and "s3cret" not in status.stdout
    assert "stopped: 1" in status.stdout and "delivered: 1" in status.stdout  # sent together, INV-2's took
    resumed = dunning("webhooks", "resume", "--by", "ops@example.com", env=env)
    assert resumed.returncode == 0 and "sending again" in resumed.stdout
    assert dunning("webhooks", "resume", env=env).returncode == 1
    assert "endpoint: 127.0.0.1: sending" in dunning("webhooks", "status", env=env).stdout
    [resumption] = [r for r in log.history() if r["kind"] == "webhook" and r["status"] == "resumed"]
    assert resumption["detail"] == {"endpoint": "127.0.0.1", "by": "ops@example.com"}
    unset = dunning("webhooks", "status", env={"DUNNING_DATABASE_URL": url})
    assert unset.returncode == 1 and "DUNNING_WEBHOOK_URL is not set" in unset.stderr
