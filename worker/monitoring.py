"""What Prometheus and the probes read from a running dunning: the states read when
scraped, readiness, and the small HTTP server that answers them beside the work.

A state — queue depth, the agenda, dead letters, webhooks waiting, the log's last
verify and checkpoint, templates — is read from Redis and the log when Prometheus asks
(`Readings`), never counted as it changes: a count kept by hand drifts when a process
dies between the change and the count, and these are shared by every host, so every
`dunning worker` reports the same values (take `max`, not `sum`, across instances).
What happens — reminders, sends, appends — is counted where it happens
(`worker.metrics`).

Readiness (`/readyz`) is whether what a process needs answers within a deadline: the
database (and its schema is this code's, or newer) and Redis. Liveness (`/healthz`) is
only that the process answers: a database away must not get a worker killed and
restarted in a loop, it waits for it (`worker.supervisor`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as Late
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from dramatiq.brokers.redis import RedisBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from worker.contact_log import ContactLog
from worker.contact_log.checkpoints import Checkpoints
from worker.contact_log.queries import last_verification
from worker.db import migrations
from worker.messages.library import Library
from worker.queue.agenda import Agenda
from worker.queue.broker import QUEUE, depth
from worker.supervisor import brief
from worker.webhooks.outbox import Outbox

logger = logging.getLogger("dunning.monitoring")
DEADLINE = 2.0  # seconds a readiness check may take before it counts as failed


@dataclass(frozen=True)
class Sources:
    """What the readings read: the log's books, and Redis through dramatiq's broker and the agenda."""

    log: ContactLog
    outbox: Outbox
    library: Library
    checkpoints: Checkpoints
    broker: RedisBroker
    agenda: Agenda


class Readings(Collector):
    """The states, read when scraped. A source that does not answer is reported as
    `dunning_metrics_source_up{source} 0` and its readings left out, rather than failing
    the scrape or showing a stale value. `wall` is the wall clock (seconds since the epoch)."""

    def __init__(self, sources: Sources, wall: Callable[[], float]) -> None:
        self.sources, self.wall = sources, wall

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("dunning_metrics_source_up", "Whether a source of the readings answered this "
                               "scrape (redis, log).", labels=["source"])
        for source, read in (("redis", self._redis), ("log", self._log)):
            try:
                families = list(read(self.wall()))
            except (SQLAlchemyError, OSError, Exception) as error:  # noqa: BLE001 (a scrape must still answer)
                logger.warning("metrics: the %s did not answer (%s)", source, brief(error))
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up

    def _redis(self, now: float) -> Iterator[GaugeMetricFamily]:
        s = self.sources
        found = depth(s.broker, QUEUE, now)
        yield _gauge("dunning_queue_messages", "Messages waiting on the queue to be fetched.", {QUEUE: found.waiting})
        yield _gauge("dunning_queue_held_messages", "Messages fetched by workers, not yet acknowledged.",
                     {QUEUE: found.held})
        age = now - found.head_queued_at if found.head_queued_at is not None else 0.0
        yield _gauge("dunning_queue_oldest_message_age_seconds", "How long the message at the head of the queue "
                     "has waited (0: none waits).", {QUEUE: max(age, 0.0)})
        yield _gauge("dunning_queue_dead_letters", "Messages dramatiq gave up on (its dead-letter queue; the log "
                     "keeps each with its reason too).", {QUEUE: found.dead})
        yield _gauge("dunning_queue_consumers", "Worker processes with a fresh heartbeat, on every host.",
                     {QUEUE: found.consumers})
        yield _plain("dunning_agenda_entries", "Deferred jobs waiting in the agenda.", s.agenda.pending())
        due = s.agenda.due_count(_moment(now))
        yield _plain("dunning_agenda_due_entries", "Agenda entries due now and not yet on the queue.", due)

    def _log(self, now: float) -> Iterator[GaugeMetricFamily]:
        s = self.sources
        yield _gauge("dunning_dead_letters", "Jobs kept with the reason they were refused, by where.",
                     s.log.dead_letter_counts(), "origin")
        webhooks = s.outbox.webhook_counts()
        yield _gauge("dunning_webhooks", "Webhooks in the outbox, by state.", webhooks, "state")
        oldest = s.outbox.oldest_pending()
        yield _plain("dunning_webhooks_oldest_pending_age_seconds", "How long the oldest webhook still to "
                     "deliver has waited (0: none waits).", max(now - oldest.timestamp(), 0.0) if oldest else 0.0)
        verified = last_verification(s.log.engine)
        yield _plain("dunning_log_verify_last_success", "Whether the last verification of the whole log found it "
                     "intact (1) or not (0); 0 when none was recorded.",
                     1.0 if verified is not None and verified[0].get("intact") else 0.0)
        yield _plain("dunning_log_verify_last_timestamp_seconds", "When the log was last verified (0: never).",
                     verified[1].timestamp() if verified is not None else 0.0)
        made = s.checkpoints.last_made_at()
        yield _plain("dunning_log_checkpoint_last_timestamp_seconds", "When the last signed checkpoint was made "
                     "(0: never).", made.timestamp() if made is not None else 0.0)
        yield _gauge("dunning_templates", "Template versions by state: live, pending (waiting for approval), "
                     "draft, retired, withdrawn.", s.library.template_states(), "state")


def _gauge(name: str, documentation: str, values: Mapping[str, float], label: str = "queue") -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value_of_label, value in sorted(values.items()):
        family.add_metric([value_of_label], float(value))
    return family


def _plain(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# Readiness -----------------------------------------------------------------------------

Check = Callable[[], str | None]  # None: fine; else what is wrong, in a few words


def database_check(engine: Engine) -> Check:
    """The database answers, and its schema is this code's head — or newer than this code
    knows, which expand-then-contract migrations keep compatible while an upgrade rolls
    out. A schema this code knows to be older is not ready: run `dunning migrate`."""
    def check() -> str | None:
        current = migrations.current(engine)
        if current == migrations.head():
            return None
        if current is not None and current in migrations.known():
            return f"the schema is behind this code ({current}, this code's is {migrations.head()}): " \
                   "run `dunning migrate`"
        return None if current is not None else "the database has no schema: run `dunning migrate`"
    return check


def redis_check(ping: Callable[[], Any]) -> Check:
    def check() -> str | None:
        ping()
        return None
    return check


def readiness(checks: Mapping[str, Check], deadline: float = DEADLINE) -> dict[str, str]:
    """Each check's verdict ("ok" or what failed), all run at once, each within `deadline`
    seconds: a database that hangs is not ready, however long it would take to say so."""
    pool = ThreadPoolExecutor(max_workers=max(len(checks), 1), thread_name_prefix="dunning-ready")
    futures = {name: pool.submit(check) for name, check in checks.items()}
    verdicts: dict[str, str] = {}
    ends = time.monotonic() + deadline
    for name, future in futures.items():
        try:
            problem = future.result(timeout=max(ends - time.monotonic(), 0.0))
            verdicts[name] = problem or "ok"
        except Late:
            verdicts[name] = f"no answer within {deadline:g} s"
        except Exception as error:  # noqa: BLE001 (the verdict is the answer)
            verdicts[name] = f"unavailable ({brief(error)})"
    pool.shutdown(wait=False)  # a hung check's thread ends with its own timeout
    return verdicts


# The HTTP server ---------------------------------------------------------------------------

def registry(readings: Readings | None = None) -> CollectorRegistry:
    """What /metrics answers: in `dunning worker`, every process's counts from the
    multiprocess folder (`PROMETHEUS_MULTIPROC_DIR`), and the readings; elsewhere this
    process's own (the client's default registry)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        kept = CollectorRegistry()
        MultiProcessCollector(kept)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        kept = REGISTRY
    if readings is not None:
        kept.register(readings)
    return kept


def application(metrics: CollectorRegistry, checks: Mapping[str, Check]) -> Callable[..., Iterable[bytes]]:
    """A WSGI application: `/metrics`, `/healthz` (the process answers), `/readyz`."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body, status, kind = generate_latest(metrics), "200 OK", CONTENT_TYPE_LATEST
        elif path in ("/healthz", "/readyz"):
            verdicts = readiness(checks) if path == "/readyz" else {}
            ready = all(v == "ok" for v in verdicts.values())
            body = json.dumps({"status": "ok" if ready else "unavailable", "checks": verdicts}).encode()
            status, kind = ("200 OK" if ready else "503 Service Unavailable"), "application/json"
        else:
            body, status, kind = b"not found: /metrics, /healthz, /readyz\n", "404 Not Found", "text/plain"
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")])
        return [body]
    return app


class _Server(ThreadingHTTPServer, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        """Prometheus scrapes every few seconds: not a log line each time."""


def listen(host: str, port: int, app: Callable[..., Iterable[bytes]], what: str) -> WSGIServer | None:
    """Serve `app` on a daemon thread. A port already taken (another `dunning worker` on
    this host?) is said loudly and the process goes on without it: the reminders matter
    more than their metrics, and Prometheus' `up` says the target is missing."""
    if port == 0:
        return None
    try:
        server = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    except OSError as error:
        logger.error("%s: cannot listen on %s:%d (%s); running without them", what, host, port, error.strerror)
        return None
    threading.Thread(target=server.serve_forever, name="dunning-metrics", daemon=True).start()
    logger.info("%s on http://%s:%d (/metrics, /healthz, /readyz)", what, host, server.server_port)
    return server
