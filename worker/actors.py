"""The dramatiq actor (an entry point: this layer may read the wall clock).

`dramatiq worker.actors` (or `dunning worker`) imports this module: it sets up the
broker from the environment (through `wiring`) and registers `remind`, which runs the pipeline on the
worker's event loop.

What an outage does here. Redis or the database away mid-reminder: the reminder is
tried again in this process, backing off from 1 s to 30 s, for up to `PATIENCE`
(a restart takes seconds; no retry budget is spent, no traceback written per try).
Past that the message goes to dramatiq's Retries, which put it back on the queue
with a delay — and when even that enqueue fails, `DurableRetries` keeps trying it
before the message is acknowledged, so no message is acknowledged and lost. A bug
fails its message at once; `DeadLetters` keeps every failed message with its reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis
from dramatiq.asyncio import async_to_sync
from dramatiq.middleware import CurrentMessage, Middleware, Retries

from worker import wiring
from worker.backoff import OUTAGE
from worker.contact_log import ContactLog
from worker.masking import mask_logs
from worker.metrics import DUE_TO_SENT, REMINDERS
from worker.pipeline import Pipeline
from worker.pipeline.reminder import Handled
from worker.queue.broker import ACTOR, MAX_BACKOFF_MS, QUEUE, RECOVERABLE, worth_retrying
from worker.settings import Settings
from worker.supervisor import brief

logger = logging.getLogger("dunning.worker")
# One JSON line per reminder: job id, outcome, channel, duration (ids only, no personal data).
reminders = logging.getLogger("dunning.reminder")
PATIENCE = 180.0  # seconds an outage is waited out in process, within the 5-minute time limit
_BROKER_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, dramatiq.errors.BrokerConnectionError)


class DeadLetters(Middleware):
    """A message that failed for good (a bug, retries exhausted) is kept with its reason.

    Listed before Retries: dramatiq runs `after_*` hooks in reverse order, so this one
    runs after Retries has decided whether the message failed."""

    def __init__(self, log: ContactLog) -> None:
        self.log = log

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if exception is not None and getattr(message, "failed", False):
            payload = message.args[0] if message.args else {}
            job_id = (payload.get("job") or {}).get("job_id") if isinstance(payload, dict) else None
            retries = message.options.get("retries", 0)
            why = "a bug: not retried" if not worth_retrying(0, exception) else f"{retries} retries exhausted"
            self.log.dead_letter("queue", f"{type(exception).__name__}: {exception} ({why})",
                                 str(message.encode(), "utf-8"), datetime.now(UTC), job_id)


class DurableRetries(Retries):
    """dramatiq's Retries, except that a retry is never lost: if Redis refuses the retry's
    enqueue, it is tried again (backing off to 30 s) before the message is acknowledged.
    Killed meanwhile, the worker leaves the message unacknowledged, and another worker
    gets it."""

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        for delay in OUTAGE.waits():
            retries = message.options.get("retries", 0)
            try:
                super().after_process_message(broker, message, result=result,  # type: ignore[no-untyped-call]
                                              exception=exception)
                return
            except _BROKER_DOWN as error:
                message.options["retries"] = retries  # this try did not happen
                logger.warning("cannot queue the retry of message %s (%s); trying again in %.0f s",
                               message.message_id, brief(error), delay)
                time.sleep(delay)


def _stop_once() -> None:
    """In a dramatiq worker process: act on the first SIGTERM only. dramatiq's handler
    answers a second one with `sys.exit` in the middle of the graceful stop, and the
    process then hangs for good on its own non-daemon threads. Seen when `dunning
    worker` was killed: dramatiq's main process logged forwarding SIGTERM twice, and
    one worker process of two never exited. SIGKILL remains for a hard stop."""
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler) or threading.current_thread() is not threading.main_thread():
        return
    stopping = False

    def once(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            handler(signum, frame)

    signal.signal(signal.SIGTERM, once)


_stop_once()
logging.getLogger("twilio").setLevel(logging.WARNING)  # it logs every request, numbers included
mask_logs()
settings = Settings.from_env()
log = wiring.log(settings, check=False)  # no I/O yet: `dunning worker` migrated it before starting us
broker = wiring.broker(settings, extra=[DeadLetters(log), CurrentMessage()],
                       retries=DurableRetries(retry_when=worth_retrying, min_backoff=5_000, max_backoff=MAX_BACKOFF_MS))
dramatiq.set_broker(broker)

_pipeline: Pipeline | None = None
_lock = asyncio.Lock()


async def pipeline() -> Pipeline:
    """One pipeline per worker process, built on the worker's event loop."""
    global _pipeline
    async with _lock:
        if _pipeline is None:
            _pipeline = Pipeline(wiring.services(settings, log))
    return _pipeline


async def _remind(payload: dict[str, Any]) -> Handled:
    """One reminder, waiting out a short outage of Redis or the database in process."""
    started = time.monotonic()
    deadline = started + PATIENCE
    for delay in OUTAGE.waits():
        try:
            handled = await (await pipeline()).run(payload)
            reminders.info(json.dumps({"job_id": handled.job_id, "outcome": handled.outcome,
                                       "channel": handled.channel,
                                       "duration_ms": round((time.monotonic() - started) * 1000, 1)}))
            return handled
        except RECOVERABLE as error:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("a reminder met an outage (%s); trying it again in %.0f s", brief(error), delay)
            await asyncio.sleep(delay)
    raise AssertionError("OUTAGE.waits() never ends")


_on_the_loop = async_to_sync(_remind)  # as dramatiq runs an async actor: on the process's event loop


@dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE)
def remind(payload: dict[str, Any]) -> None:
    """`_remind` on the event loop, counted here, in the worker's thread, where dramatiq's
    `CurrentMessage` says when the message was queued: what became of it, and for a sent
    reminder the time from being queued as due (by intake, or by the agenda releasing
    it; a retry keeps the time) to the provider's acceptance. A handler that raised (an
    outage past `PATIENCE`, a bug) counts as `raised`: Retries or the dead letters take it on."""
    try:
        handled = _on_the_loop(payload)
    except BaseException:
        REMINDERS.labels("raised", "none").inc()
        raise
    REMINDERS.labels(handled.outcome, handled.channel or "none").inc()
    message = CurrentMessage.get_current_message()
    if handled.outcome == "sent" and handled.channel is not None and message is not None:
        DUE_TO_SENT.labels(handled.channel).observe(max(time.time() - message.message_timestamp / 1000, 0.0))


__all__ = ["DeadLetters", "DurableRetries", "broker", "remind"]
