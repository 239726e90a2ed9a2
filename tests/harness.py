"""The worker for real, shared by the end-to-end tests: `dunning worker` as a separate
process, redis-server, an aiosmtpd server, the Twilio sandbox, and the contact log on
SQLite and PostgreSQL (one stack per test module and database)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from conftest import emptied, job_data
from fakes.smtp import Scripted
from fakes.twilio import ScriptedSandbox

from worker import wiring
from worker.contact_log import ContactLog
from worker.http.app import create_app
from worker.jobs.book import JobBook
from worker.jobs.intake import submit
from worker.jobs.parse import parse_job
from worker.local.ports import free_port
from worker.local.stack import Stack
from worker.policy import profiles
from worker.settings import SHIPPED_DIR, Settings

WEDNESDAY_10 = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
FAST_RECOVERY = {"DUNNING_BROKER_HEARTBEAT_MS": "1500", "DUNNING_BROKER_MAINTENANCE_CHANCE": "1000000",
                 "DUNNING_CLAIM_LEASE_S": "3"}


class Harness:
    def __init__(self, stack: Stack, log: ContactLog, mail: Scripted, templates: Path,
                 worker_env: dict[str, str]) -> None:
        self.stack, self.log, self.mail, self.templates = stack, log, mail, templates
        self.worker_env = worker_env
        self.database = worker_env.get("DUNNING_DATABASE_URL", "sqlite").split(":")[0].split("+")[0]

    def job(self, due: str = "2026-12-02", **changes: Any) -> dict[str, Any]:
        """A fresh job (own ids and addresses), due on `due`, in Shanghai."""
        tag = uuid.uuid4().hex[:10]
        data = job_data(job_id=f"T-{tag}/reminder", invoice__id=f"INV-{tag}", invoice__number=tag,
                        invoice__due_date=due, debtor__account_id=f"ACC-{tag}",
                        debtor__email=f"d{tag}@example.com", debtor__preferred_channel=None,
                        debtor__consent={"email": True, "sms": True, "voice": True})
        for key, value in changes.items():
            *parents, leaf = key.split("__")
            target = data
            for parent in parents:
                target = target[parent]
            target[leaf] = value
        return data

    def run(self, *jobs: dict[str, Any], at: datetime = WEDNESDAY_10) -> None:
        self.stack.set_clock(at)
        parsed = [parse_job(job, profiles(None), "test") for job in jobs]
        submit(parsed, JobBook(self.log), profiles(None), self.stack.broker, at)
        self.stack.wait_idle(timeout=60)

    def events(self, job: dict[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
        return [(r["kind"], r["status"], r["channel"], r["error_code"])
                for r in self.log.history(account=job["debtor"]["account_id"])
                if r["kind"] in ("delivery", "suppression")]

    def emails_to(self, address: str) -> list[Any]:
        return [m for m in self.mail.messages() if m["To"] == address]

    def reminders_for(self, job: dict[str, Any]) -> int:
        """Emails and texts that reached the sinks for this job's invoice."""
        return len(self.emails_to(job["debtor"]["email"])) + len(
            self.texts_to(job["debtor"].get("phone") or "", job["invoice"]["number"]))

    def texts_to(self, number: str, body_has: str) -> list[dict[str, Any]]:
        return [m for m in self.stack.sandbox.sent() if m["to"] == number and body_has in m["body"]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    directory = Path(tempfile.mkdtemp(prefix="dunning-worker-"))
    templates = directory / "templates"
    shutil.copytree(SHIPPED_DIR, templates)
    mail = Scripted(directory / "mail")
    stack = Stack(directory, smtp_handler=mail, sandbox=ScriptedSandbox(directory / "twilio")).start()
    extra = {"DUNNING_TEMPLATE_DIR": str(templates), **FAST_RECOVERY}
    if hasattr(request.module, "worker_env"):  # a test module's own settings for its worker (a fixture)
        extra |= request.getfixturevalue("worker_env")
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        log = ContactLog.open(url, stack.master_key).migrate()
        emptied(log)
        extra["DUNNING_DATABASE_URL"] = url
    else:
        log = ContactLog.open(stack.env()["DUNNING_DATABASE_URL"], stack.master_key).migrate()
    stack.start_worker(processes=1, threads=4, extra_env=extra)
    yield Harness(stack, log, mail, templates, extra)
    stack.stop()
    log.engine.dispose()
    if not os.environ.get("DUNNING_KEEP_TEST_DIRS"):
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def serving(log: ContactLog, env: Mapping[str, str], clock: Callable[[], datetime],
            port: int | None = None) -> Iterator[str]:
    """`dunning serve`'s app on `port` (a free one by default), for real (uvicorn), its
    public URL what it listens on."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings.from_env({**env, "DUNNING_PUBLIC_URL": url})
    app = create_app(log, wiring.books(log), wiring.Links(settings), settings, clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
