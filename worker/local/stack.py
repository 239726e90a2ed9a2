"""Everything a worker talks to, started locally: Redis, an SMTP server, the Twilio sandbox.

`make demo` and the integration tests use it, so the whole way of a reminder runs for
real on one machine with no credentials. The worker itself runs as a separate process
(`dunning worker`) configured by `env()`.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from worker import wiring
from worker.clock import RedisClock
from worker.local.ports import free_port
from worker.local.redis_server import RedisServer
from worker.local.smtp_sink import EmlFolder, PostfixSink, start
from worker.local.twilio_sandbox import Sandbox
from worker.queue.agenda import Agenda
from worker.queue.broker import backlog
from worker.settings import Settings

TWILIO_FROM = "+15005550006"  # Twilio's magic "valid sender" test number


class Stack:
    """`smtp_handler`: aiosmtpd's handler (`EmlFolder`, writing each message to disk, by
    default), or a `PostfixSink` for the benchmarks."""

    def __init__(self, directory: Path, smtp_handler: Any = None, sandbox: Sandbox | None = None) -> None:
        self.directory = directory
        self.redis = RedisServer(directory / "redis")
        self.mail = smtp_handler or EmlFolder(directory / "mail")
        self.sandbox = sandbox or Sandbox(directory / "twilio")
        self.smtp: Controller | PostfixSink | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.secret_key = _own_secret(directory)  # this stack's own: never a published one
        self.master_key = _own_master_key(directory)
        self.metrics_port = free_port()  # this stack's worker's /metrics; `serve`'s stays off (tests run many)

    def start(self) -> Stack:
        self.redis.start()
        self.smtp = self.mail.start() if isinstance(self.mail, PostfixSink) else start(self.mail)
        self.sandbox.start()
        settings = Settings.from_env(self.env())  # built as the worker builds them (`worker.wiring`)
        self.client = wiring.redis_for(settings)
        self.clock = RedisClock(self.client)  # DUNNING_CLOCK=redis: the clock this stack's processes share
        self.agenda = Agenda(self.client)
        self.broker = wiring.broker(settings)
        return self

    def env(self) -> dict[str, str]:
        assert self.smtp is not None
        return {
            "DUNNING_REDIS_URL": self.redis.url,
            "DUNNING_DATABASE_URL": f"sqlite:///{self.directory / 'dunning.db'}",
            "DUNNING_CLOCK": "redis",
            "DUNNING_SMTP_URL": f"smtp://127.0.0.1:{self.smtp.port}",
            "DUNNING_TWILIO_ACCOUNT_SID": self.sandbox.account_sid,
            "DUNNING_TWILIO_AUTH_TOKEN": self.sandbox.auth_token,
            "DUNNING_TWILIO_FROM": TWILIO_FROM,
            "DUNNING_TWILIO_BASE_URL": self.sandbox.url,
            "DUNNING_PUBLIC_URL": "http://127.0.0.1:8000",
            "DUNNING_ESCALATION_EMAIL": "supervisor@example.com",
            "DUNNING_SECRET_KEY": self.secret_key,
            "DUNNING_MASTER_KEY": base64.b64encode(self.master_key).decode(),
            "DUNNING_METRICS_PORT": str(self.metrics_port),
            "DUNNING_SERVE_METRICS_PORT": "0",
        }

    def set_clock(self, moment: datetime) -> None:
        self.clock.set(moment)

    def start_worker(self, processes: int = 1, threads: int = 4, extra_env: dict[str, str] | None = None,
                     log_file: Path | None = None) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env(), **(extra_env or {})}
        output = open(log_file or self.directory / "worker.log", "ab")  # noqa: SIM115 (kept for the child)
        process = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--processes", str(processes),
                                    "--threads", str(threads)], env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.workers.append(process)
        return process

    def wait_idle(self, timeout: float = 60.0, settle: float = 0.5) -> None:
        """Until nothing is queued, nothing in the agenda due within a minute (a send slot
        or a retry is work under way; Monday 09:00 is not), and that stays so for `settle` s."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            busy = backlog(self.broker) + self.agenda.due_count(self.clock.now() + timedelta(minutes=1))
            if busy == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return
            else:
                quiet_since = None
            time.sleep(0.1)
        raise TimeoutError(f"the worker did not finish within {timeout:g} s (backlog {backlog(self.broker)})")

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
        for process in self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.workers.clear()

    def stop(self) -> None:
        self.stop_workers()
        if self.smtp is not None:
            self.smtp.stop()
        self.sandbox.stop()
        self.broker.close()
        self.redis.stop()


def _own_secret(directory: Path) -> str:
    """The stack's signing key, kept beside its database like the master key: a console
    served later over the same log signs unsubscribe links as the worker did, so a message
    it reproduces is the one sent."""
    path = directory / "secret.key"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _own_master_key(directory: Path) -> bytes:
    """The stack's master key (base64), made once and kept beside its database: the log
    sealed under it stays readable when the stack starts again (`make demo` twice)."""
    path = directory / "master.key"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        path.chmod(0o600)
    return base64.b64decode(path.read_text().strip())
