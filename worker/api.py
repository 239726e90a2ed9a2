"""The Python API for billing systems: `worker.enqueue(jobs)` (an entry point, like the CLI)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from worker.contact_log import ContactLog
from worker.job import Job
from worker.queue import make_broker
from worker.settings import Settings
from worker.submit import Intake, as_parsed, submit


def enqueue(jobs: Iterable[Job | dict[str, Any]], settings: Settings | None = None) -> Intake:
    """Queue reminder jobs (models or JSON-like dicts) for the worker configured by the
    environment. Invalid jobs come back in `Intake.rejected` with their errors and are
    kept as dead letters; a job_id seen before is listed in `Intake.duplicates`.
    """
    settings = settings or Settings.from_env()
    broker = make_broker(settings.redis_url)
    log = ContactLog.open(settings.database_url)
    try:
        return submit(as_parsed(jobs), log, broker, datetime.now(UTC))
    finally:
        broker.close()
        log.engine.dispose()
