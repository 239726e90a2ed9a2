"""The billing API over real HTTP (uvicorn on loopback), real Redis, both databases:
keys and scopes, the body's limits, and jobs in through the same intake as the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import job_data
from harness import serving
from test_cli import DUNNING, dunning

from worker.contact_log import ContactLog
from worker.contact_log.checkpoints import Checkpoints
from worker.contact_log.note import Signer, Verifier, keygen
from worker.jobs.parse import read_jobs
from worker.local.ports import answering, free_port
from worker.policy import profiles
from worker.queue.agenda import Agenda
from worker.queue.broker import backlog, make_broker
from worker.users.keys import Keys, parse_scopes

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
ENV = {"DUNNING_SECRET_KEY": "k" * 32}


@dataclass
class Api:
    url: str
    log: ContactLog
    keys: dict[str, str]
    clock: list[datetime]  # the server's now: clock[0]

    def call(self, method: str, path: str, body: bytes | None = None, key: str | None = "writer",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if key:
            sent["Authorization"] = f"Bearer {self.keys.get(key, key)}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, got, raw = answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as error:
            status, got, raw = error.code, dict(error.headers), error.read()
        return status, got, json.loads(raw) if raw else None

    def post(self, path: str, payload: Any, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        return self.call("POST", path, json.dumps(payload, ensure_ascii=False).encode(), **kwargs)


def queued(redis_server: Any) -> int:
    """Messages on the reminders queue now."""
    broker = make_broker(redis_server.url)
    try:
        return backlog(broker)
    finally:
        broker.close()


def an_invoice() -> dict[str, Any]:
    """The sample job as an invoice to register: its id the invoice's, no stage."""
    invoice = job_data(job_id="INV-2026-0042")
    invoice.pop("stage", None)
    return invoice


@pytest.fixture
def api(log: ContactLog, redis_server: Any, redis_client: Any) -> Iterator[Api]:
    keys = {"writer": Keys(log).create_key("writer", parse_scopes("jobs:write,read"), NOW, "test"),
            "reader": Keys(log).create_key("reader", parse_scopes("read"), NOW, "test"),
            "events": Keys(log).create_key("events", parse_scopes("events:write"), NOW, "test")}
    clock = [NOW]
    with serving(log, ENV | {"DUNNING_REDIS_URL": redis_server.url}, lambda: clock[0]) as url:
        yield Api(url, log, keys, clock)


def test_a_key_is_required_valid_live_and_scoped(api: Api) -> None:
    job = job_data()
    status, headers, body = api.post("/v1/jobs", job, key=None)
    assert status == 401 and headers["content-type"] == "application/problem+json" and body["status"] == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert api.post("/v1/jobs", job, key="dk_not-a-key")[0] == 401
    assert api.post("/v1/jobs", job, key="reader")[0] == 403, "read only: no jobs:write"
    Keys(api.log).revoke_key("writer", NOW, "test")
    status, _, body = api.post("/v1/jobs", job)
    assert status == 401 and "revoked" in body["detail"]


def test_the_body_must_be_json_utf8_and_within_limits(api: Api) -> None:
    assert api.call("POST", "/v1/jobs", b"{}", headers={"Content-Type": "text/plain"})[0] == 415
    assert api.call("POST", "/v1/jobs", b'{"job_id": "\xff"}')[0] == 400
    status, _, body = api.call("POST", "/v1/jobs", b'{"jobs": [')
    assert status == 400 and body["detail"].startswith("the body is not JSON")
    assert api.post("/v1/jobs", {"jobs": [job_data()] * 1001})[0] == 413
    assert _declared_too_big(api) == 413, "refused on the headers, before 5 MB are read"


def _declared_too_big(api: Api) -> int:
    """A request announcing a 6 MB body; the answer is read before any of it is sent."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(api.url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as conn:
        conn.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: application/json\r\n"
                      f"Authorization: Bearer {api.keys['writer']}\r\nContent-Length: {6 * 1024 * 1024}\r\n\r\n")
                     .encode())
        return int(conn.recv(4096).split(b" ", 2)[1])


def test_jobs_in_like_the_cli_accepted_duplicates_and_rejected_with_its_wording(
        api: Api, redis_server: Any) -> None:
    good = job_data()
    bad = job_data(job_id="INV-9/due_day", debtor__email="not-an-address")
    status, _, body = api.post("/v1/jobs", {"jobs": [good, bad]})
    assert status == 202, body
    assert body["accepted"] == [good["job_id"]] and body["duplicates"] == []
    [rejected] = body["rejected"]
    assert rejected["index"] == 1 and rejected["job_id"] == "INV-9/due_day"
    [expected] = [p for p in read_jobs(json.dumps(bad).encode(), profiles(None))]  # what `dunning validate` says
    assert [f"{e['path']}: {e['message']}" for e in rejected["errors"]] == expected.errors
    [kept] = api.log.dead_letters()
    assert kept["job_id"] == "INV-9/due_day" and kept["reason"] == "; ".join(expected.errors)
    again = api.post("/v1/jobs", good)
    assert again[0] == 202 and again[2]["duplicates"] == [good["job_id"]] and again[2]["accepted"] == []
    assert queued(redis_server) == 1, "queued once"


def test_an_invoice_registers_its_cadence(api: Api, redis_client: Any) -> None:
    invoice = an_invoice()
    status, _, body = api.post("/v1/invoices", invoice)
    assert status == 202 and body["accepted"] == ["INV-2026-0042"], body
    assert Agenda(redis_client).pending() > 0, "its steps are planned in the agenda"


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(api: Api, redis_server: Any) -> None:
    job = job_data()
    first = api.post("/v1/jobs", job, headers={"Idempotency-Key": "order-1"})
    again = api.post("/v1/jobs", job, headers={"Idempotency-Key": "order-1"})
    assert first[0] == again[0] == 202 and again[2] == first[2] and first[2]["accepted"] == [job["job_id"]]
    assert again[1].get("idempotency-replayed") == "true" and "idempotency-replayed" not in first[1]
    other = api.post("/v1/jobs", job_data(job_id="INV-2/due_day"), headers={"Idempotency-Key": "order-1"})
    assert other[0] == 422 and other[2]["errors"][0]["path"] == "Idempotency-Key"
    assert api.post("/v1/jobs", job, headers={"Idempotency-Key": "x" * 256})[0] == 422
    assert queued(redis_server) == 1, "one job queued, however often it was sent"


def test_idempotency_keys_belong_to_their_api_key_and_expire_after_a_day(api: Api) -> None:
    api.keys["other"] = Keys(api.log).create_key("other", parse_scopes("jobs:write"), NOW, "test")
    job = job_data()
    assert api.post("/v1/jobs", job, headers={"Idempotency-Key": "k1"})[2]["accepted"] == [job["job_id"]]
    status, headers, body = api.post("/v1/jobs", job, key="other", headers={"Idempotency-Key": "k1"})
    assert status == 202 and "idempotency-replayed" not in headers and body["duplicates"] == [job["job_id"]]
    api.clock[0] = NOW + timedelta(hours=24, seconds=1)
    later = api.post("/v1/jobs", job_data(job_id="INV-3/due_day"), headers={"Idempotency-Key": "k1"})
    assert later[0] == 202 and later[2]["accepted"] == ["INV-3/due_day"], "expired: the key is free again"


def test_events_over_http_change_the_agenda_and_say_what_changed(api: Api, redis_client: Any) -> None:
    invoice = an_invoice()
    assert api.post("/v1/invoices", invoice)[0] == 202
    agenda = Agenda(redis_client)
    planned = agenda.pending()
    assert planned > 0
    assert api.post("/v1/invoices/INV-2026-0042/dispute", {"note": "wrong quantity"})[0] == 403, "needs events:write"
    status, _, paused = api.post("/v1/invoices/INV-2026-0042/dispute", {"note": "wrong quantity"}, key="events")
    assert status == 200 and len(paused["paused"]) == planned and agenda.pending() == 0
    status, _, resumed = api.post("/v1/invoices/INV-2026-0042/dispute", {"resolved": True}, key="events")
    assert status == 200 and sorted(resumed["resumed"]) == sorted(paused["paused"])
    status, _, paid = api.post("/v1/invoices/INV-2026-0042/payment", {}, key="events")
    assert status == 200 and sorted(paid["cancelled"]) == sorted(paused["paused"]) and agenda.pending() == 0
    kinds = [(r["kind"], r["status"], (r["detail"] or {}).get("by")) for r in api.log.history(invoice="INV-2026-0042")]
    assert ("invoice", "paid", "api:events") in kinds, "recorded as the CLI records it, by the key's name"
    status, _, body = api.post("/v1/opt-outs", {"address": "Zhang.Wei@Example.com"}, key="events")
    assert status == 200 and body["suppressed"] == ["Zhang.Wei@example.com"] and body["changed"] is True
    assert api.post("/v1/opt-outs", {"address": "Zhang.Wei@Example.com"}, key="events")[2]["changed"] is False
    assert api.post("/v1/accounts/ACME-001/cease", {"note": "letter of 2026-11-20"}, key="events")[0] == 200


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/invoices/INV-1/promise", {"until": "next week"}, "until"),
    ("/v1/invoices/INV-1/promise", {"until": "2020-01-01"}, "until"),
    ("/v1/invoices/INV-1/payment", {"amount": "-5"}, "amount"),
    ("/v1/invoices/INV-1/payment", {"amount": "12", "currency": "CNY"}, "currency"),
    ("/v1/opt-outs", {"address": "not an address"}, "address"),
    ("/v1/opt-outs", {"account_id": "A", "channel": "fax"}, "channel"),
])
def test_a_bad_event_field_is_422_naming_it(api: Api, path: str, body: dict[str, Any], field: str) -> None:
    status, headers, problem = api.post(path, body, key="events")
    assert status == 422 and headers["content-type"] == "application/problem+json", problem
    assert field in [e["path"] for e in problem["errors"]], problem


def test_a_job_and_an_invoice_read_back_and_a_pending_step_is_cancelled(api: Api, redis_client: Any) -> None:
    job = job_data(job_id="INV-7/due_day", invoice__id="INV-7")
    assert api.post("/v1/jobs", job)[0] == 202
    status, _, view = api.call("GET", "/v1/jobs/INV-7%2Fdue_day", key="reader")
    assert status == 200 and view["job_id"] == "INV-7/due_day" and view["state"] == "accepted", view
    assert view["invoice_id"] == "INV-7" and view["decisions"] == [] and view["deliveries"] == []
    assert api.call("GET", "/v1/jobs/INV-7%2Fdue_day", key="events")[0] == 403, "needs read"
    assert api.call("GET", "/v1/jobs/NOPE%2Fdue_day", key="reader")[0] == 404
    invoice = an_invoice()
    assert api.post("/v1/invoices", invoice)[0] == 202
    status, _, view = api.call("GET", "/v1/invoices/INV-2026-0042", key="reader")
    assert status == 200 and view["state"] == "open" and view["pending"], view
    dues = [p["due"] for p in view["pending"]]
    assert dues == sorted(dues) and all(not p["paused"] for p in view["pending"])
    step = view["pending"][0]["job_id"]
    encoded = step.replace("/", "%2F")
    status, _, done = api.call("DELETE", f"/v1/jobs/{encoded}")
    assert status == 200 and done == {"job_id": step, "cancelled": True, "state": "cancelled"}
    assert Agenda(redis_client).due_at(step) is None
    assert api.call("GET", f"/v1/jobs/{encoded}", key="reader")[2]["state"] == "cancelled"
    assert api.call("DELETE", f"/v1/jobs/{encoded}")[2]["cancelled"] is False, "once"
    assert api.call("DELETE", "/v1/jobs/NOPE%2Fdue_day")[0] == 404
    [cancel] = [r for r in api.log.history(job=step) if r["kind"] == "job"]
    assert cancel["status"] == "cancelled" and cancel["detail"]["by"] == "api:writer"
    api.post("/v1/invoices/INV-2026-0042/payment", {}, key="events")
    after = api.call("GET", "/v1/invoices/INV-2026-0042", key="reader")[2]
    assert after["state"] == "paid" and after["pending"] == []


def test_the_latest_checkpoint_is_served_as_its_signed_note(api: Api) -> None:
    assert api.call("GET", "/v1/log/checkpoint", key="reader")[0] == 404  # none made yet
    private, public = keygen("billing.example.com/dunning")
    note = Checkpoints(api.log).make(Signer.parse(private), NOW)
    assert note is not None
    request = urllib.request.Request(api.url + "/v1/log/checkpoint",
                                     headers={"Authorization": f"Bearer {api.keys['reader']}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        served, kind = answer.read().decode(), answer.headers["Content-Type"]
    assert served == note and kind.startswith("text/plain") and Verifier.parse(public).open(served)
    assert api.call("GET", "/v1/log/checkpoint", key=None)[0] == 401


def test_the_openapi_description_names_every_route_its_key_and_its_answers(api: Api) -> None:
    status, _, described = api.call("GET", "/v1/openapi.json", key=None)
    assert status == 200 and described["openapi"].startswith("3.")
    routes = {(method, path) for path, item in described["paths"].items() for method in item}
    assert routes == {("post", "/v1/jobs"), ("post", "/v1/invoices"), ("post", "/v1/invoices/{invoice_id}/payment"),
                      ("post", "/v1/invoices/{invoice_id}/write-off"), ("post", "/v1/invoices/{invoice_id}/dispute"),
                      ("post", "/v1/invoices/{invoice_id}/promise"), ("post", "/v1/opt-outs"),
                      ("post", "/v1/accounts/{account_id}/cease"), ("get", "/v1/jobs/{job_id}"),
                      ("delete", "/v1/jobs/{job_id}"), ("get", "/v1/invoices/{invoice_id}"),
                      ("get", "/v1/log/checkpoint")}
    assert described["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in described["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert operation["security"] == [{"bearer": []}] and {"401", "403", "500"} <= codes, (method, path)
            if method == "post":
                assert {"400", "409", "413", "415", "422"} <= codes and "requestBody" in operation, (method, path)
                assert "Idempotency-Key" in [p["name"] for p in operation["parameters"]]
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (method, path, code)
    assert set(described["webhooks"]) == {"reminder.sent", "reminder.delivered", "reminder.failed",
                                          "reminder.suppressed", "invoice.escalated"}
    for kind, item in described["webhooks"].items():
        sent = item["post"]
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} == {p["name"] for p in sent["parameters"]}
        assert sent["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/WebhookMessage")
        assert {"2XX", "410"} <= set(sent["responses"]), kind
    job = described["components"]["schemas"]["Job"]
    assert job["additionalProperties"] is False and {"job_id", "invoice", "debtor"} <= set(job["required"])


def test_one_key_sent_to_two_server_processes_at_once_is_accepted_once(tmp_path: Any, redis_server: Any,
                                                                       redis_client: Any) -> None:
    """Two `dunning serve` processes on one database: the idempotency key is claimed in
    the database, so exactly one of them runs the request."""
    env = {**ENV, "DUNNING_REDIS_URL": redis_server.url, "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    assert dunning("migrate", env=env).returncode == 0
    key = dunning("keys", "create", "erp", "--scopes", "jobs:write", env=env).stdout.strip().splitlines()[-1]
    ports = [free_port(), free_port()]
    servers = [subprocess.Popen([DUNNING, "serve", "--port", str(port)], env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    try:
        for port in ports:
            assert answering(f"http://127.0.0.1:{port}/v1/openapi.json", 30), "dunning serve did not start"
        jobs = {"jobs": [job_data(job_id=f"INV-{n}/due_day", invoice__id=f"INV-{n}") for n in range(300)]}
        answers: list[tuple[int, dict[str, str], Any]] = []
        start = threading.Barrier(2)

        def send(port: int) -> None:
            start.wait()
            api = Api(f"http://127.0.0.1:{port}", None, {"erp": key}, [NOW])  # type: ignore[arg-type]
            answers.append(api.post("/v1/jobs", jobs, key="erp", headers={"Idempotency-Key": "batch-9"}))

        threads = [threading.Thread(target=send, args=(port,)) for port in ports]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    assert sorted(a[0] for a in answers) in ([202, 202], [202, 409]), [a[0] for a in answers]
    ran = [a for a in answers if a[0] == 202 and "idempotency-replayed" not in a[1]]
    assert len(ran) == 1 and len(ran[0][2]["accepted"]) == 300
    assert queued(redis_server) == 300, "each job queued once"


def test_an_event_for_an_invoice_never_seen_is_404_not_success(api: Api) -> None:
    """A billing system's typo in an invoice id is a 404 problem, not "paid … changed"."""
    for path, body in (("/v1/invoices/NOPE-9/payment", {}), ("/v1/invoices/NOPE-9/payment", {"amount": "10.00"}),
                       ("/v1/invoices/NOPE-9/dispute", {}), ("/v1/invoices/NOPE-9/write-off", {}),
                       ("/v1/invoices/NOPE-9/promise", {"until": "2026-12-24"})):
        status, headers, problem = api.post(path, body, key="events")
        assert status == 404 and headers["content-type"] == "application/problem+json", (path, problem)
        assert "invoice NOPE-9: the contact log has no job for this invoice" in problem["detail"]
    assert api.call("GET", "/v1/invoices/NOPE-9", key="reader")[0] == 404
    assert list(api.log.history(invoice="NOPE-9")) == [], "nothing recorded"


def test_one_rejected_job_is_422_with_its_problems_and_kept(api: Api) -> None:
    bad = job_data(job_id="INV-9/due_day", debtor__email="not-an-address", invoice__amount_due=120.5)
    status, headers, problem = api.post("/v1/jobs", bad)
    assert status == 422 and headers["content-type"] == "application/problem+json", problem
    paths = {e["path"] for e in problem["errors"]}
    assert paths == {"debtor.email", "invoice.amount_due"}, problem
    assert "a decimal string is expected" in problem["detail"]
    [kept] = api.log.dead_letters()
    assert kept["job_id"] == "INV-9/due_day", "kept as a dead letter, as in a batch"


def test_event_fields_are_explained_in_the_callers_words(api: Api) -> None:
    status, _, problem = api.post("/v1/invoices/INV-1/payment", {"amount": 120}, key="events")
    assert status == 422
    assert problem["errors"] == [{"path": "amount", "message": 'must be a decimal string like "120.00", got 120'}]
    status, _, problem = api.post("/v1/invoices/INV-1/promise", {"until": "next week"}, key="events")
    assert problem["errors"] == [{"path": "until",
                                  "message": 'must be a date like "2026-12-24" (YYYY-MM-DD), got "next week"'}]
    status, _, problem = api.post("/v1/invoices/INV-1/payment", {"amount": "1", "currency": "CNY"}, key="events")
    assert problem["errors"] == [{"path": "currency", "message": "is not a field of this request (it takes: amount)"}]
    status, _, problem = api.post("/v1/invoices/INV-1/promise", {}, key="events")
    assert problem["errors"][0]["message"].startswith("is required: a date like")


def test_every_problem_type_is_a_page_that_says_what_to_do(api: Api) -> None:
    """`type` is never about:blank: each problem names a page served here that explains it."""
    found = [api.post("/v1/jobs", job_data(), key=None),  # 401
             api.post("/v1/jobs", job_data(), key="reader"),  # 403
             api.call("POST", "/v1/jobs", b"{", ),  # 400
             api.call("POST", "/v1/jobs", b"{}", headers={"Content-Type": "text/plain"}),  # 415
             api.post("/v1/jobs", {"jobs": [job_data()] * 1001}),  # 413
             api.post("/v1/jobs", job_data(debtor__email="x")),  # 422
             api.post("/v1/invoices/NOPE-9/payment", {}, key="events"),  # 404
             api.call("GET", "/v1/jobs/NOPE%2Fx", key="reader")]  # 404
    seen = set()
    for status, _, problem in found:
        assert problem["status"] == status and problem["type"].startswith(api.url + "/v1/problems/"), problem
        seen.add(problem["type"])
    assert len(seen) == 7
    for type_ in seen:
        with urllib.request.urlopen(type_, timeout=10) as page:
            text = page.read().decode()
        assert page.status == 200 and "<h1>" in text and "problem details" in text
    with urllib.request.urlopen(api.url + "/v1/problems/not-found", timeout=10) as page:
        assert "POST /v1/invoices" in page.read().decode(), "says how an invoice becomes known"


def test_the_servers_profile_folder_is_the_one_its_settings_name(log: ContactLog, redis_server: Any,
                                                                 tmp_path: Any, monkeypatch: Any) -> None:
    """A server told its profile folder (`Settings.profile_dir`) decides with it, whatever
    the process's environment says: the setting is handed in, not read again below."""
    (tmp_path / "acme.toml").write_text('description = "acme"\nextends = ["default"]\n')
    monkeypatch.delenv("DUNNING_PROFILE_DIR", raising=False)
    key = Keys(log).create_key("writer", parse_scopes("jobs:write"), NOW, "test")
    env = ENV | {"DUNNING_REDIS_URL": redis_server.url}
    job = job_data(job_id="INV-ACME/due_day", profile="acme")
    with serving(log, env | {"DUNNING_PROFILE_DIR": str(tmp_path)}, lambda: NOW) as url:
        status, _headers, body = Api(url, log, {"writer": key}, [NOW]).post("/v1/jobs", job)
    assert status == 202 and body["accepted"] == ["INV-ACME/due_day"], body
    with serving(log, env, lambda: NOW) as url:  # without the folder, the profile is unknown
        status, _headers, body = Api(url, log, {"writer": key}, [NOW]).post("/v1/jobs", {**job, "job_id": "X/1"})
    assert status == 422 and "acme" in json.dumps(body), body
