"""Prometheus metrics and the probes, read as Prometheus reads them (the client's own
parser) from a real `dunning worker` (its processes adding up through the multiprocess
folder) and `dunning serve`'s application: the counts match what the log says happened."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from harness import WEDNESDAY_10, Harness, serving
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from test_cli import dunning
from test_deploy_checks import documented

from worker.contact_log.queries import event_count
from worker.local.ports import answering
from worker.metrics import HTTP_REQUESTS

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    text = exposition(port)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def exposition(port: int) -> str:
    """/metrics as text, once the worker listens (it does as it has started its loops)."""
    assert answering(f"http://127.0.0.1:{port}/healthz", within=30), "the worker's metrics port never answered"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value, summed over the labels not named (0 when absent)."""
    return sum(v for (n, kept), v in samples.items()
               if n == name and all(dict(kept).get(k) == want for k, want in labels.items()))


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_counts_match_the_log(harness: Harness) -> None:
    port = harness.stack.metrics_port
    sent_email = harness.job("2026-12-08")  # pre_due_7: email, sent
    busy = harness.job("2026-12-02", debtor__phone="+8613600136001")  # due_day: SMS, 30001, then sent
    # Twilio's queue overflow: transient, and not one the channel retries itself; back through the agenda.
    harness.stack.sandbox.script.failures = [{"status": 400, "code": 30001}]
    invalid = harness.job("2026-12-02", debtor__phone="+15005550001")  # SMS 21211 (permanent), then email
    jobs = [sent_email, busy, invalid]
    before, events_before = scrape(port), event_count(harness.log.engine)
    harness.run(*jobs)
    harness.stack.set_clock(WEDNESDAY_10 + timedelta(minutes=31))  # the retry's time (`backoff.REMINDER`)
    harness.stack.wait_idle()
    after = scrape(port)

    history = [r for job in jobs for r in harness.log.history(account=job["debtor"]["account_id"])]
    statuses = Counter((r["kind"], r["status"], r["channel"]) for r in history)
    assert delta(after, before, "dunning_sends_total", channel="email", provider="smtp", result="sent") \
        == statuses["delivery", "sent", "email"] == 2
    assert delta(after, before, "dunning_sends_total", channel="sms", provider="twilio", result="sent") \
        == statuses["delivery", "sent", "sms"] == 1
    retries = statuses["delivery", "retry", "sms"]
    assert delta(after, before, "dunning_sends_total", channel="sms", result="transient") == retries == 1
    assert delta(after, before, "dunning_provider_errors_total", channel="sms", code_class="3xxxx") == 1
    assert delta(after, before, "dunning_sends_total", channel="sms", provider="twilio", result="permanent") \
        == statuses["delivery", "failed", "sms"] == 1
    assert delta(after, before, "dunning_provider_errors_total", channel="sms") == retries + 1
    assert delta(after, before, "dunning_provider_errors_total", channel="sms", code_class="2xxxx") == 1, "21211"
    claimed = statuses["delivery", "claimed", "email"] + statuses["delivery", "claimed", "sms"]
    assert claimed == 4 and delta(after, before, "dunning_claim_to_outcome_seconds_count") == claimed + retries, \
        "each exchange: four claims, and the retry under its claim"
    # Each message from the queue once: the 429 came back through the agenda, as a message of its own.
    assert delta(after, before, "dunning_reminders_total", outcome="sent", channel="email") == 2
    assert delta(after, before, "dunning_reminders_total", outcome="sent", channel="sms") == 1
    assert delta(after, before, "dunning_reminders_total", outcome="retry", channel="sms") == retries
    assert delta(after, before, "dunning_reminder_due_to_sent_seconds_count") == 3
    sends = delta(after, before, "dunning_decisions_total", action="send")
    throttled = delta(after, before, "dunning_reminders_total", outcome="throttled")
    assert sends == statuses["decision", "send", None] + throttled, \
        "each send decision the log keeps (with its claim), and those that waited for the sender's rate first"
    assert delta(after, before, "dunning_decision_rules_total", action="send", rule="W-LEGAL") == sends
    # Every event appended meanwhile was the worker's (intake keeps jobs beside the chains), on their chains.
    assert delta(after, before, "dunning_log_appends_total") == event_count(harness.log.engine) - events_before
    assert delta(after, before, "dunning_log_lock_wait_seconds_count") > 0
    assert delta(after, before, "dunning_agenda_release_lateness_seconds_count") >= 1, "the 30001's retry"
    # States, read as scraped: nothing waits now; the one worker process is seen.
    assert value(after, "dunning_queue_messages", queue="reminders") == 0
    deadline = time.monotonic() + 20  # a worker process reports what it holds every 5 s, the first 5 s after boot
    while value(after, "dunning_queue_consumers", queue="reminders") < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        after = scrape(port)
    assert value(after, "dunning_queue_consumers", queue="reminders") == 1, "one process; not the test's enqueuer"
    assert value(after, "dunning_metrics_source_up", source="redis") == 1
    assert value(after, "dunning_metrics_source_up", source="log") == 1
    assert value(after, "dunning_templates", state="live") > 0
    assert value(after, "dunning_webhooks_oldest_pending_age_seconds") == 0


def test_labels_take_no_personal_or_unbounded_values(harness: Harness) -> None:
    job = harness.job("2026-12-08", debtor__name="Zhang Metrics")
    harness.run(job)
    text = exposition(harness.stack.metrics_port)
    for kept in (job["job_id"], job["invoice"]["id"], job["debtor"]["account_id"], job["debtor"]["email"],
                 "Zhang Metrics"):
        assert kept not in text
    names = {family.name for family in text_string_to_metric_families(text)}
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.name.endswith("_seconds"):
            assert family.type in ("histogram", "gauge"), family.name
    assert {"dunning_reminders", "dunning_sends", "dunning_queue_messages", "dunning_agenda_entries",
            "dunning_log_verify_last_timestamp_seconds"} <= names
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in text_string_to_metric_families(text)}
    assert exported - documented() == set(), "every metric the worker exports is in the README's table"


def test_the_worker_answers_its_probes(harness: Harness) -> None:
    base = f"http://127.0.0.1:{harness.stack.metrics_port}"
    exposition(harness.stack.metrics_port)
    assert get(f"{base}/healthz") == (200, {"status": "ok", "checks": {}})
    assert get(f"{base}/readyz") == (200, {"status": "ok", "checks": {"database": "ok", "redis": "ok"}})


@pytest.fixture
def served(harness: Harness) -> Iterator[str]:
    with serving(harness.log, {**harness.stack.env(), **harness.worker_env}, lambda: WEDNESDAY_10) as url:
        yield url


def test_serve_counts_requests_by_route_template(served: str) -> None:
    def count(route: str, status: str) -> float:
        return REGISTRY.get_sample_value("dunning_http_request_duration_seconds_count",
                                         {"route": route, "method": "GET", "status": status}) or 0.0

    # A path no route takes is `unmatched`, never the path itself.
    before = count("/v1/jobs/{job_id:path}", "401"), count("unmatched", "404")
    for job_id in ("A-1", "B-2", "C-3"):
        try:
            urllib.request.urlopen(f"{served}/v1/jobs/{job_id}", timeout=10)
        except urllib.error.HTTPError as error:
            assert error.code == 401
    try:
        urllib.request.urlopen(f"{served}/no/such/page/secret-token", timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 404
    deadline = time.monotonic() + 5  # a request is counted as its handling ends, just after the client has the answer
    while count("unmatched", "404") - before[1] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count("/v1/jobs/{job_id:path}", "401") - before[0] == 3, "one series for the route, not one per job"
    assert count("unmatched", "404") - before[1] == 1
    labelled = {dict(s.labels)["route"] for metric in REGISTRY.collect() if metric.name == HTTP_REQUESTS._name
                for s in metric.samples}
    assert not any("A-1" in route or "secret-token" in route for route in labelled)
    served_names = {m.name + ("_total" if m.type == "counter" else "") for m in REGISTRY.collect()
                    if m.name.startswith("dunning_")}
    assert served_names - documented() == set(), "every metric the server exports is in the README's table"


def test_serve_is_ready_only_when_redis_answers(harness: Harness) -> None:
    env = {**harness.stack.env(), **harness.worker_env}
    with serving(harness.log, env, lambda: WEDNESDAY_10) as url:
        assert get(f"{url}/healthz")[0] == 200
        assert get(f"{url}/readyz") == (200, {"status": "ok", "checks": {"database": "ok", "redis": "ok"}})
    away = {**env, "DUNNING_REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    with serving(harness.log, away, lambda: WEDNESDAY_10) as url:
        status, body = get(f"{url}/readyz")
        assert status == 503 and body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok" and body["checks"]["redis"].startswith("unavailable (")
        assert get(f"{url}/healthz")[0] == 200, "alive all the same: nothing to restart"


def test_a_verification_from_the_command_line_is_what_the_metrics_say(harness: Harness) -> None:
    port = harness.stack.metrics_port
    harness.run(harness.job("2026-12-08"))
    before = scrape(port)
    verified = dunning("log", "verify", env={**harness.stack.env(), **harness.worker_env})
    assert verified.returncode == 0, verified.stderr
    after = scrape(port)
    assert value(after, "dunning_log_verify_last_success") == 1
    assert value(after, "dunning_log_verify_last_timestamp_seconds") > value(before,
                                                                              "dunning_log_verify_last_timestamp_seconds")
    [kept] = [r for r in harness.log.history() if r["kind"] == "access" and r["status"] == "verified"][-1:]
    assert kept["detail"]["intact"] is True and kept["detail"]["via"] == "command line"
    partial = dunning("log", "verify", "--account", "ACC-none", env={**harness.stack.env(), **harness.worker_env})
    assert partial.returncode == 0
    assert value(scrape(port), "dunning_log_verify_last_timestamp_seconds") \
        == value(after, "dunning_log_verify_last_timestamp_seconds"), "one account's chain is not the whole log"
