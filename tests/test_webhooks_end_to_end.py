"""Webhooks from a real `dunning worker` and `dunning serve` to a billing system's
endpoint on loopback, verified there by the Standard Webhooks reference library:
`reminder.sent` from the worker, `reminder.delivered` from Twilio's callback through
the server, and an endpoint that hangs never holding up a reminder."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.webhooks import HANG, Receiver
from harness import Harness, serving

from worker.local.ports import free_port

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
SERVE_PORT = free_port()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as running:
        yield running


@pytest.fixture(scope="module")
def worker_env(receiver: Receiver) -> dict[str, str]:
    """The worker's settings (`harness`): the endpoint, and the server below for Twilio's callbacks."""
    return {"DUNNING_WEBHOOK_URL": receiver.url, "DUNNING_WEBHOOK_SECRET": SECRET,
            "DUNNING_PUBLIC_URL": f"http://127.0.0.1:{SERVE_PORT}"}


def about(receiver: Receiver, job: dict[str, Any], kind: str, count: int = 1,
          within: float = 20.0) -> list[dict[str, Any]]:
    """The verified webhooks of `kind` for `job`, once `count` have come (or `within` s passed)."""
    deadline = time.monotonic() + within
    while True:
        found = [p for p in receiver.payloads(kind) if p["data"]["job_id"] == job["job_id"]]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_the_worker_reports_a_sent_reminder_once(harness: Harness, receiver: Receiver) -> None:
    job = harness.job("2026-12-08")
    harness.run(job)
    [hook] = about(receiver, job, "reminder.sent")
    assert hook["data"]["channel"] == "email" and hook["data"]["recipient"].startswith(job["debtor"]["email"][0])
    assert job["debtor"]["email"] not in str(hook)
    time.sleep(1.5)  # a second copy would have come by now
    assert len(about(receiver, job, "reminder.sent", within=0)) == 1
    [attempt] = [r for r in harness.log.history(invoice=job["invoice"]["id"]) if r["kind"] == "webhook"]
    assert attempt["status"] == "delivered" and attempt["error_code"] == "http-200"


def test_twilios_callback_through_the_server_is_reported_as_delivered(harness: Harness, receiver: Receiver) -> None:
    env = {**harness.stack.env(), **harness.worker_env}
    job = harness.job("2026-12-02", debtor__phone="+8613900139111")  # due_day: sms first
    with serving(harness.log, env, harness.stack.clock.now, port=SERVE_PORT):
        harness.run(job)
        [delivered] = about(receiver, job, "reminder.delivered")
    assert delivered["data"]["channel"] == "sms" and delivered["data"]["status"] == "delivered"
    assert delivered["data"]["recipient"] == "+86139****9111"
    assert [p["type"] for p in receiver.payloads() if p["data"]["job_id"] == job["job_id"]] == [
        "reminder.sent", "reminder.delivered"]


def test_an_endpoint_that_hangs_holds_up_no_reminder(harness: Harness, receiver: Receiver) -> None:
    receiver.then = HANG
    receiver.release.clear()
    first, jobs = harness.job("2026-12-08"), [harness.job("2026-12-08") for _ in range(12)]
    try:
        harness.run(first)
        deadline = time.monotonic() + 20
        while not any(r.answer == HANG for r in receiver.received) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(r.answer == HANG for r in receiver.received), "the dispatcher is now waiting on the endpoint"
        harness.run(*jobs)  # every reminder sent while the endpoint holds its connection open
        for job in jobs:
            assert [e[1] for e in harness.events(job)] == ["claimed", "sent"]
        assert not any(about(receiver, job, "reminder.sent", within=0) for job in [first, *jobs])
    finally:
        receiver.then = 200
        receiver.release.set()  # the hung request ends without an answer: retried
    for job in [first, *jobs]:
        assert len(about(receiver, job, "reminder.sent", within=40)) == 1
