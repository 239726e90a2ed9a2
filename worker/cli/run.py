"""The long-running processes: `worker` and `serve`; and `migrate`, which they also run as they start."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.cli.app import app
from worker.cli.common import err, long_running, out, profiles_or_exit
from worker.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from worker.contact_log import ContactLog


@app.command()
def worker(
    processes: Annotated[int, typer.Option(help="Worker processes (one per core).")] = 2,
    threads: Annotated[int, typer.Option(help="Threads per process.")] = 8,
    check: Annotated[bool, typer.Option("--check", help="Do not run: say whether the worker running here is "
                                                        "healthy (exit 0) or not (exit 1, saying why).")] = False,
) -> None:
    """Run the worker: dramatiq processes for the queue, and the agenda's dispatcher,
    the intake reconciler, the stranded-message recovery, (with DUNNING_WEBHOOK_URL)
    the webhooks' dispatcher and (with DUNNING_CHECKPOINT_KEY) the log's signed
    checkpoints, each kept alive; /metrics, /healthz and /readyz on DUNNING_METRICS_PORT."""
    import shutil
    import time

    if check:
        from worker.supervisor import check as check_health

        problems = check_health(Settings.from_env().health_file, time.time())
        for problem in problems:
            err.print(problem, markup=False)
        if not problems:
            out.print("healthy", markup=False)
        raise typer.Exit(1 if problems else 0)
    counts = _counting_across_processes()  # before anything imports prometheus_client
    try:
        _work(processes, threads)
    finally:
        shutil.rmtree(counts, ignore_errors=True)


def _work(processes: int, threads: int) -> None:
    """`dunning worker`, running."""
    import signal
    import subprocess
    import threading
    import time
    from datetime import timedelta

    from worker import monitoring, wiring
    from worker.loops import checkpointer, parent_loops
    from worker.queue.agenda import Agenda
    from worker.queue.broker import QUEUE
    from worker.supervisor import Supervisor

    settings = long_running()
    signer = wiring.signer(settings)
    log = _opened(settings)  # migrated once, before the workers start
    # At SIGTERM each dramatiq process puts back what it fetched and has not begun, and gives what it has begun
    # DUNNING_SHUTDOWN_S to finish; a send still running then is cut off, its message goes back (README: Upgrading).
    child = subprocess.Popen([sys.executable, "-m", "dramatiq", "worker.actors", "--processes", str(processes),
                              "--threads", str(threads), "--queues", QUEUE,
                              "--worker-shutdown-timeout", str(int(settings.shutdown_s * 1000))],
                             preexec_fn=_die_with_parent)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    client = wiring.redis_for(settings)
    clock = wiring.clock(settings, client)
    broker = wiring.broker(settings)
    agenda = Agenda(client)
    books = wiring.books(log)
    webhooks = wiring.webhooks(settings, books.outbox, clock, time.time)
    checkpoints = (checkpointer(books.checkpoints, signer, clock, settings.checkpoint_dir, settings.checkpoint_every_s)
                   if signer is not None else None)
    loops = parent_loops(log, books.jobs, profiles_or_exit(), broker, agenda, clock,
                         timedelta(seconds=settings.stranded_after_s), webhooks, checkpoints)
    supervisor = Supervisor(loops, stop, time.time, settings.health_file)
    supervisor.start()
    readings = monitoring.Readings(monitoring.Sources(log, books.outbox, books.library, books.checkpoints, broker,
                                                      agenda), time.time)
    exposed = monitoring.listen(settings.metrics_host, settings.metrics_port, monitoring.application(
        monitoring.registry(readings), _checks(log, client)), "the worker's metrics and probes")
    code = supervisor.watch(lambda: child.poll() is None)
    stop.set()
    if webhooks is not None:
        webhooks.close()  # a request in flight ends within its timeout; the webhook stays leased, then retried
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    child_code = child.wait()
    if exposed is not None:
        exposed.shutdown()
    settings.health_file.unlink(missing_ok=True)
    raise typer.Exit(code or (child_code if child_code and child_code > 0 else 0))


def _counting_across_processes() -> str:
    """A fresh folder where every process of this worker — the parent and dramatiq's —
    writes its counts (prometheus-client's multiprocess mode), so one /metrics adds them
    up. Set in the environment the dramatiq children inherit, before this process makes
    its first metric (the client picks its mode then). Fresh at each start: counts of a
    worker that ran before must not be added in (Prometheus sees a counter reset, as
    after any restart). Removed as the worker stops."""
    import os
    import tempfile

    if "worker.metrics" in sys.modules:  # too late: this process's metrics would count in its memory only
        raise RuntimeError("dunning's metrics were made before the worker chose its multiprocess folder")
    folder = tempfile.mkdtemp(prefix="dunning-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    if "prometheus_client.values" in sys.modules:  # the client imported already (a sitecustomize): choose again
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # the client leaves it untyped
    return folder


def _checks(log: ContactLog, client: Any) -> dict[str, Callable[[], str | None]]:
    """What /readyz asks of `worker` and `serve`: the database (and its schema) and Redis."""
    from worker.monitoring import database_check, redis_check

    return {"database": database_check(log.engine), "redis": redis_check(client.ping)}


def _opened(settings: Settings) -> ContactLog:
    """The log for `worker` and `serve`: migrated, its keys opened by the master key (exit 2
    if they do not open: another key), older rows given blind indexes; exit 3 while the
    database is away (systemd or Kubernetes start us again)."""
    from worker import wiring
    from worker.contact_log import parties
    from worker.errors import ConfigError

    try:
        log = wiring.log(settings, migrate=True)
        log.vault.check()
        log.vault.index_legacy()
        parties.mark_pending(log.engine, log.vault)
    except ConfigError as error:  # the master key missing, or not this log's
        err.print(f"not starting: {error}", markup=False)
        raise typer.Exit(2) from None
    except Exception as error:  # the database away at start: say so; systemd/Kubernetes start us again
        err.print(f"not starting: the contact log is unavailable ({type(error).__name__})", markup=False)
        raise typer.Exit(3) from None
    return log


def _die_with_parent() -> None:
    """In the dramatiq child: be sent SIGTERM if `dunning worker` dies (even by SIGKILL),
    so no worker process runs on orphaned, without its dispatcher (Linux)."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the billing API (/v1, keys from `dunning keys`), Twilio status callbacks
    (/twilio/status), SMS replies (/twilio/inbound) and one-click unsubscribes (/u/TOKEN).
    Twilio signs for DUNNING_PUBLIC_URL: set it to the URL the outside world uses."""
    import threading

    import uvicorn

    from worker import monitoring, wiring
    from worker.http.app import create_app

    settings = long_running()
    if not settings.twilio_auth_token:
        err.print("DUNNING_TWILIO_AUTH_TOKEN is not set: every Twilio request will be refused (403)", markup=False)
    log = _opened(settings)
    clock = wiring.clock(settings)
    links = wiring.Links(settings)
    app_ = create_app(log, wiring.books(log), links, settings, clock.now)
    threading.Thread(target=_read_ahead, args=(settings, log, clock.now), name="read-ahead", daemon=True).start()
    monitoring.listen(settings.metrics_host, settings.serve_metrics_port,
                      monitoring.application(monitoring.registry(), _checks(log, links.client)),
                      "the server's metrics and probes")
    uvicorn.run(app_, host=host, port=port, log_level="info", proxy_headers=True)



def _read_ahead(settings: Settings, log: ContactLog, now: Callable[[], datetime], every: float = 60.0) -> None:
    """The Schedule page's jobs parsed before anyone asks (`forecast.warm`), as `serve`
    starts and then every minute, so a morning's new batch is parsed before the operator
    looks. With Redis away nothing is lost: the page says so, or parses them itself."""
    import logging
    import time

    from worker import wiring
    from worker.pipeline import forecast
    from worker.policy import profiles
    from worker.queue.agenda import Agenda

    logger, agenda = logging.getLogger("dunning.serve"), Agenda(wiring.redis_for(settings))
    last = ""  # said once, and again only when it changes: not a line a minute
    while True:
        started = time.monotonic()
        try:
            kept = forecast.warm(agenda, log, profiles(settings.profile_dir), now())
            outcome, said = "read", f"the Schedule page's {kept} jobs read ahead in {time.monotonic() - started:.1f} s"
        except Exception as error:  # Redis away, or the log: the page will say so when asked
            outcome = said = f"the Schedule page's jobs were not read ahead ({type(error).__name__})"
        if outcome != last:
            logger.info("%s", said)
            last = outcome
        time.sleep(every)


@app.command()
def migrate() -> None:
    """Bring the contact log's schema up to date (Alembic); `worker` and `serve` also do
    this as they start. Safe to run again, and while workers run."""
    from worker import wiring
    from worker.db import migrations

    settings = Settings.from_env()
    try:
        log = wiring.log(settings, migrate=True)
    except Exception as error:
        err.print(f"the contact log is unavailable ({type(error).__name__}: {error})", markup=False)
        raise typer.Exit(3) from None
    found = migrations.current(log.engine)
    log.engine.dispose()
    if migrations.is_newer(found):
        out.print(f"the contact log's schema is at revision {found}, newer than this release's "
                  f"({migrations.head()}): left as it is; this release runs on it during a rolling upgrade",
                  markup=False)
        return
    out.print(f"the contact log's schema is up to date (revision {migrations.head()})", markup=False)
