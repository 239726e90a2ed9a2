"""The dramatiq actor, and the wall clock (this is the layer allowed to read it).

`dramatiq worker.actors` (or `dunning worker`) imports this module: it sets up the
broker from the environment and registers `remind`, which runs the pipeline on the
worker's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from worker.contact_log import ContactLog
from worker.pipeline import Pipeline
from worker.queue import ACTOR, QUEUE, make_broker
from worker.settings import Settings


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class DeadLetters(Middleware):
    """A message that failed for good (retries exhausted) is kept with its reason."""

    def __init__(self, log: ContactLog, clock: Any) -> None:
        self.log, self.clock = log, clock

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if exception is not None and getattr(message, "failed", False):
            payload = message.args[0] if message.args else {}
            job_id = (payload.get("job") or {}).get("job_id") if isinstance(payload, dict) else None
            self.log.dead_letter("queue", f"{type(exception).__name__}: {exception}", str(message.encode(), "utf-8"),
                                 datetime.now(UTC), job_id)


logging.getLogger("twilio").setLevel(logging.WARNING)  # it logs every request, numbers included
settings = Settings.from_env()
log = ContactLog.open(settings.database_url)
broker = make_broker(settings.redis_url, extra=[DeadLetters(log, SystemClock())],
                     heartbeat_ms=settings.broker_heartbeat_ms, maintenance_chance=settings.broker_maintenance_chance)
dramatiq.set_broker(broker)

_pipeline: Pipeline | None = None
_lock = asyncio.Lock()


async def pipeline() -> Pipeline:
    """One pipeline per worker process, built on the worker's event loop."""
    global _pipeline
    async with _lock:
        if _pipeline is None:
            from worker.services import build_services

            clock = SystemClock() if settings.clock == "system" else None
            _pipeline = Pipeline(build_services(settings, clock, log))
    return _pipeline


@dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE)
async def remind(payload: dict[str, Any]) -> None:
    await (await pipeline()).handle(payload)
