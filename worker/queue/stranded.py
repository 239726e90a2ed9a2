"""Messages stranded in a live worker's acknowledgement set, and how they go back.

dramatiq moves a message into the fetching worker's ack set in Redis and expects that
worker to ack it. When Redis hangs or restarts mid-reply, the worker may never have had
the message (the fetch's reply lost), or may have dropped it (a consumer restarted after
a connection error forgets its delayed messages) — yet it stays in the set, and
dramatiq requeues an ack set only once its worker is dead.

So each worker process reports, every `REPORT_EVERY` seconds, the messages it holds —
queued for its threads, delayed, being worked on until acked (`HeldMessages`, a
dramatiq middleware) — and the worker parent's `stranded` loop puts back every member
of an ack set that the freshest report of its worker does not name, `GRACE` seconds
after it first saw it (`recover_stranded`): within a minute of Redis answering again.
Without a fresh report (a worker of an older version, or one too stuck to report) a
member goes back only after `DUNNING_STRANDED_AFTER_S`. A message put back while still
in hand would run twice; the contact log's claim makes that a no-op. (An ack that timed
out is another way to stay in the set: `broker._Broker` has dramatiq retry it.)

Tested against a relay that hangs Redis at a worker's fetch (tests/fakes/hang.py): on
the code before this module four of 400 reminders waited the half hour.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from dramatiq.brokers.redis import RedisBroker

logger = logging.getLogger("dunning.queue")

REPORT_EVERY = 5.0  # seconds between a worker process's reports
FRESH = 20.0  # a report older than this says nothing: its process is stuck, or gone
GRACE = 30.0  # an ack-set member no fresh report names goes back this long after it was first seen
_KEPT = 120  # seconds a report outlives its process in Redis

_REQUEUE = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def _held_key(namespace: str, broker_id: str) -> str:
    return f"{namespace}:__held__.{broker_id}"


def reporting_key(namespace: str) -> str:
    """A sorted set of the worker processes that report, scored by their last report's
    time (Redis time): how many consume the queue (`worker.queue.broker.depth`). dramatiq's
    own heartbeats cannot say it: every broker that enqueues beats too."""
    return f"{namespace}:__reporting__"


def reporting(client: Any, namespace: str) -> int:
    """Worker processes whose last report is fresh (within two rounds and a margin)."""
    return int(client.zcount(reporting_key(namespace), _server_time(client) - 2 * REPORT_EVERY - 1, "+inf"))


def _server_time(client: Any) -> float:
    """Redis's own clock: the reports and the sweep may run on different hosts."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


class HeldMessages(dramatiq.Middleware):
    """Reports the messages this worker process holds (see the module's docstring). It
    reads the worker's queues (`work_queue`, each consumer's `delay_queue`: dramatiq's
    own attributes, stable across 1.x) and tracks what its threads work on until acked."""

    def __init__(self) -> None:
        self._working: dict[int, str] = {}  # a worker thread → the message it works on until acked
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def after_worker_boot(self, broker: Broker, worker: dramatiq.Worker) -> None:
        assert isinstance(broker, RedisBroker)
        self._stop.clear()
        threading.Thread(target=self._report_every, args=(broker, worker), name="held-messages",
                         daemon=True).start()

    def before_worker_shutdown(self, broker: Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        """A thread that takes a message is done with its last one, acked or not (an ack
        dramatiq gave up on would otherwise be reported as held forever)."""
        with self._lock:
            self._working[threading.get_ident()] = _id(message)

    def after_ack(self, broker: Broker, message: MessageProxy) -> None:
        with self._lock:
            if self._working.get(threading.get_ident()) == _id(message):
                del self._working[threading.get_ident()]

    after_nack = after_ack

    def held(self, worker: dramatiq.Worker) -> set[str]:
        """The ids this process holds now."""
        found = set(_ids_in(worker.work_queue))
        for consumer in list(worker.consumers.values()):
            found.update(_ids_in(consumer.delay_queue))
        with self._lock:
            found.update(self._working.values())
        return found

    def _report_every(self, broker: RedisBroker, worker: dramatiq.Worker) -> None:
        while not self._stop.wait(REPORT_EVERY):
            try:
                report(broker, self.held(worker))
            except Exception as error:  # Redis away: the next report, then
                logger.debug("could not report the held messages: %s", type(error).__name__)


def report(broker: RedisBroker, held: Iterable[str]) -> None:
    """Write this broker's (process's) report: the ids it holds, and when (Redis time)."""
    client = broker.client
    key = _held_key(broker.namespace, broker.broker_id)
    at = _server_time(client)
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.sadd(key, "@" + repr(at), *held)  # the time rides in the set: one key, written at once
        pipe.expire(key, _KEPT)
        pipe.zadd(reporting_key(broker.namespace), {broker.broker_id: at})
        pipe.zremrangebyscore(reporting_key(broker.namespace), "-inf", at - _KEPT)  # processes long gone
        pipe.execute()


def _reports(client: Any, namespace: str, broker_id: str) -> tuple[float, set[str]] | None:
    members = {m.decode() if isinstance(m, bytes) else str(m)
               for m in client.smembers(_held_key(namespace, broker_id))}
    stamps = [m for m in members if m.startswith("@")]
    if len(stamps) != 1:
        return None
    return float(stamps[0][1:]), members - set(stamps)


def _ids_in(queue: Any) -> list[str]:
    with queue.mutex:
        return [_id(item.message) for item in list(queue.queue)]


def _id(message: Any) -> str:
    return str(message.options.get("redis_message_id", message.message_id))


def recover_stranded(broker: RedisBroker, seen: dict[tuple[str, str], float], after: float,
                     now: float | None = None, grace: float = GRACE) -> int:
    """Put back on its queue every ack-set member that its worker's fresh report does not
    hold `grace` seconds after it was first seen — or, with no fresh report, `after`
    seconds after; returns how many. `seen` (kept by the caller between calls) remembers
    since when each member has been there, in Redis time (`now` for tests)."""
    client = broker.client
    now = _server_time(client) if now is None else now
    prefix = f"{broker.namespace}:__acks__."
    present: set[tuple[str, str]] = set()
    moved = 0
    requeue = client.register_script(_REQUEUE)
    for raw_key in client.scan_iter(match=f"{prefix}*", count=500):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        worker_id, _, queue_name = key[len(prefix):].partition(".")
        if not queue_name:
            continue
        reported = _reports(client, broker.namespace, worker_id)
        fresh = reported if reported is not None and now - reported[0] <= FRESH else None
        for raw_id in client.smembers(key):
            member = (key, raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id))
            present.add(member)
            first = seen.setdefault(member, now)
            unheld = (fresh is not None and fresh[0] >= first + REPORT_EVERY and member[1] not in fresh[1]
                      and now - first >= grace)
            if unheld or now - first >= after:
                queue_key = f"{broker.namespace}:{queue_name}"
                if requeue(keys=[key, queue_key, f"{queue_key}.msgs"], args=[member[1]]):
                    moved += 1
                    logger.info("message %s back on its queue: in %s's ack set, %s", member[1], worker_id,
                                "held by nobody" if unheld else f"for over {after:g} s")
                seen.pop(member, None)
                present.discard(member)
    for member in set(seen) - present:
        del seen[member]
    return moved
