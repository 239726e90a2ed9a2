"""The queue: dramatiq on Redis, and how messages get onto it in bulk.

One queue (`reminders`), one actor (`remind`). Enqueueing one message at a time costs
a Redis round trip and ~230 µs of CPU; intake and the agenda dispatcher enqueue
thousands at once, so they pipeline dramatiq's own dispatch script (the same call
`RedisBroker.enqueue` makes) — 1,000 messages per round trip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import dramatiq
import redis
import sqlalchemy.exc
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.middleware import AgeLimit, AsyncIO, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit
from dramatiq.threading import Interrupt

from worker.queue.stranded import HeldMessages, reporting

QUEUE = "reminders"
ACTOR = "remind"
MAX_BACKOFF_MS = 10 * 60 * 1000
MAX_RETRIES = 10
# What may pass: the database or Redis away or locked, the network down, the worker
# shutting down or out of time. Providers' own failures never get here (the pipeline
# handles them, through the agenda).
RECOVERABLE = (Interrupt, OSError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
               redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
BATCH = 1000
# A Redis that hangs (stopped, a full disk, a partition) must fail a call, not hang it:
# every caller treats a timeout like a refused connection (an outage, tried again).
REDIS_TIMEOUTS: dict[str, Any] = {"socket_timeout": 15.0, "socket_connect_timeout": 5.0, "health_check_interval": 30}


class _Broker(RedisBroker):
    """dramatiq's Redis broker, where a call Redis did not answer in time counts as a lost
    connection — as it does for the rest of dunning. dramatiq retries an ack or a nack
    that met `redis.ConnectionError` until it goes through, and restarts a consumer
    whose fetch met one; but `redis.TimeoutError` is not a ConnectionError, and an ack
    that timed out (Redis hung) was given up ("Unhandled error during
    post_process_message"), its message left in the ack set for half an hour."""

    def _dispatch(self, command: str) -> Any:
        call = super()._dispatch(command)  # type: ignore[no-untyped-call]

        def answered_in_time(queue_name: str, *args: Any) -> Any:
            try:
                return call(queue_name, *args)
            except redis.exceptions.TimeoutError as error:
                raise redis.exceptions.ConnectionError(f"Redis did not answer in time ({error})") from error
        return answered_in_time


def make_broker(redis_url: str, extra: Sequence[dramatiq.Middleware] = (), heartbeat_ms: int = 60_000,
                maintenance_chance: int = 1_000, retries: Retries | None = None) -> RedisBroker:
    """dramatiq's Redis broker with the middleware dunning relies on.

    Retries back off to at most 10 minutes (longer waits belong in the agenda), and
    only for what may pass (`worth_retrying`). A worker silent for `heartbeat_ms` is
    presumed dead and its unacknowledged messages go back to the queue (checked on
    `maintenance_chance` in a million broker calls).

    `extra` goes before Retries: dramatiq calls `after_*` hooks in reverse order, so a
    middleware that must know whether a message failed for good (dead letters) has to
    come before the one that decides it.
    """
    middleware: list[dramatiq.Middleware] = [
        AgeLimit(), TimeLimit(time_limit=5 * 60 * 1000), ShutdownNotifications(), Callbacks(), Pipelines(),
        HeldMessages(), *extra,
        retries or Retries(retry_when=worth_retrying, min_backoff=5_000, max_backoff=MAX_BACKOFF_MS), AsyncIO()]
    broker = _Broker(url=redis_url, middleware=middleware,  # type: ignore[no-untyped-call]
                         heartbeat_timeout=heartbeat_ms, maintenance_chance=maintenance_chance,
                         **REDIS_TIMEOUTS)
    broker.declare_queue(QUEUE)
    return broker


def redis_client(url: str) -> redis.Redis:
    """A Redis client for the agenda, the clock and the throttle, with `REDIS_TIMEOUTS`."""
    return redis.Redis.from_url(url, **REDIS_TIMEOUTS)


def worth_retrying(retries: int, error: BaseException) -> bool:
    """Retry an outage, up to `MAX_RETRIES` times; not a bug, which would fail the same
    way each time: that job goes to the dead letters at once, with its reason."""
    return retries < MAX_RETRIES and isinstance(error, RECOVERABLE)


class Encoded(str):
    """A payload already written as JSON (the agenda keeps its entries so): queued as it
    is, not read and written again — that was two thirds of the agenda's dispatcher's
    time (bench/agenda.py). On Redis, a middleware's enqueue hooks see it as this text."""


def message(payload: Mapping[str, Any] | Encoded, options: dict[str, Any] | None = None, queue: str = QUEUE,
            actor: str = ACTOR) -> dramatiq.Message[Any]:
    # One id for the message and its Redis entry (RedisBroker.enqueue gives each its own uuid4).
    identity = str(uuid4())
    return dramatiq.Message(queue_name=queue, actor_name=actor, args=(payload,), kwargs={},
                            options={"redis_message_id": identity, **(options or {})}, message_id=identity,
                            message_timestamp=current_millis())


def enqueue_many(broker: dramatiq.Broker, payloads: Iterable[Mapping[str, Any] | Encoded], queue: str = QUEUE,
                 actor: str = ACTOR) -> int:
    """Put payloads on the queue (the reminders', unless the benchmarks' floors say
    another); pipelined on Redis, one by one on any other broker."""
    count = 0
    batch: list[dramatiq.Message[Any]] = []
    for payload in payloads:
        batch.append(message(payload, None, queue, actor))
        if len(batch) >= BATCH:
            count += _flush(broker, batch)
            batch = []
    if batch:
        count += _flush(broker, batch)
    return count


def _encoded(item: dramatiq.Message[Any]) -> bytes:
    """`item.encode()`, with an `Encoded` payload put in as it is."""
    payload = item.args[0]
    if not isinstance(payload, Encoded):
        return item.encode()
    rest = json.dumps({**item.asdict(), "args": [None]}, separators=(",", ":"))
    head, _, tail = rest.partition('"args":[null]')
    return f'{head}"args":[{payload}]{tail}'.encode()


def _flush(broker: dramatiq.Broker, batch: list[dramatiq.Message[Any]]) -> int:
    dispatch = getattr(broker, "scripts", {}).get("dispatch") if isinstance(broker, RedisBroker) else None
    if dispatch is None:
        for item in batch:
            payload = item.args[0]
            broker.enqueue(item.copy(args=(json.loads(payload),)) if isinstance(payload, Encoded) else item)
        return len(batch)
    assert isinstance(broker, RedisBroker)
    with broker.client.pipeline(transaction=False) as pipe:
        for item in batch:
            broker.emit_before("enqueue", item, None)
            # The arguments of RedisBroker._dispatch("enqueue"), maintenance off.
            dispatch(keys=[broker.namespace], client=pipe, args=[
                "enqueue", current_millis(), item.queue_name, broker.broker_id, broker.heartbeat_timeout,
                broker.dead_message_ttl, 0, broker._max_unpack_size(),  # type: ignore[no-untyped-call]
                item.options["redis_message_id"],
                _encoded(item)])
        pipe.execute()
    for item in batch:
        broker.emit_after("enqueue", item, None)
    return len(batch)


def backlog(broker: RedisBroker) -> int:
    """Messages enqueued or delayed and not yet acknowledged."""
    total = 0
    for name in (QUEUE, dq_name(QUEUE)):
        total += int(broker.client.hlen(f"{broker.namespace}:{name}.msgs"))
    return total


@dataclass(frozen=True)
class Depth:
    """A queue as Prometheus is told it (`worker.monitoring`): messages waiting to be
    fetched, held by workers and not yet acknowledged, when the one at the head was queued,
    dramatiq's dead letters, and the worker processes that report what they hold (`stranded.reporting`)."""

    waiting: int
    held: int
    head_queued_at: float | None  # seconds since the epoch
    dead: int
    consumers: int


def depth(broker: RedisBroker, queue: str, now: float) -> Depth:
    """`queue` now (`now`: the wall clock, seconds). The queue is a list
    dramatiq pushes at the tail and fetches from the head; its messages' bodies, held ones
    included, are in a hash beside it."""
    key = f"{broker.namespace}:{queue}"
    with broker.client.pipeline(transaction=False) as pipe:
        pipe.llen(key)
        pipe.hlen(f"{key}.msgs")
        pipe.lindex(key, 0)
        pipe.zcard(f"{key}.XQ")
        waiting, kept, head, dead = pipe.execute()
    queued_at = None
    if head is not None and (body := broker.client.hget(f"{key}.msgs", head)) is not None:
        try:
            queued_at = float(json.loads(body)["message_timestamp"]) / 1000
        except (ValueError, KeyError, TypeError):
            queued_at = None  # not a message dramatiq wrote: no age rather than a wrong one
    return Depth(int(waiting), max(int(kept) - int(waiting), 0), queued_at, int(dead),
                 reporting(broker.client, broker.namespace))


def forget_dead_messages(broker: RedisBroker, account_id: str) -> int:
    """Delete the messages naming an account from dramatiq's dead-letter queues (kept
    there for days, with the job in plain text): an erasure leaves no copy in Redis.
    Live messages are left to run: the worker drops a job whose account was erased."""
    client = broker.client
    needles = [f'"account_id":{json.dumps(account_id)}'.encode(), f'"account_id": {json.dumps(account_id)}'.encode(),
               f'"account_id":{json.dumps(account_id, ensure_ascii=False)}'.encode()]
    removed = 0
    for raw_key in client.scan_iter(match=f"{broker.namespace}:*.XQ.msgs", count=500):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        ids = [message_id for message_id, body in client.hscan_iter(key) if any(n in body for n in needles)]
        if ids:
            with client.pipeline() as pipe:
                pipe.hdel(key, *ids)
                pipe.zrem(key.removesuffix(".msgs"), *ids)
                pipe.execute()
            removed += len(ids)
    return removed
