"""The agenda on a real redis-server: due-time order, leases, crash recovery, durability."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from worker.local.redis_server import RedisServer
from worker.queue.agenda import Agenda

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def test_entries_come_due_in_time_order_and_not_before(redis_client: redis.Redis) -> None:
    agenda = Agenda(redis_client)
    agenda.schedule("late", {"job": "late"}, T0 + timedelta(hours=2))
    agenda.schedule("early", {"job": "early"}, T0)
    agenda.schedule("middle", {"job": "middle"}, T0 + timedelta(hours=1))
    assert agenda.claim(T0 - timedelta(seconds=1)) == []
    assert [e.id for e in agenda.claim(T0 + timedelta(hours=1))] == ["early", "middle"]
    assert agenda.next_due() == T0 + timedelta(hours=2)


def test_rescheduling_replaces_the_entry(redis_client: redis.Redis) -> None:
    agenda = Agenda(redis_client)
    agenda.schedule("job", {"v": 1}, T0)
    agenda.schedule("job", {"v": 2}, T0 + timedelta(days=1))
    assert agenda.claim(T0) == []
    [entry] = agenda.claim(T0 + timedelta(days=1))
    assert entry.payload == {"v": 2}


def test_done_forgets_but_a_reschedule_during_the_claim_survives(redis_client: redis.Redis) -> None:
    agenda = Agenda(redis_client)
    agenda.schedule_many([("a", {"n": 1}, T0), ("b", {"n": 2}, T0)])
    claimed = agenda.claim(T0)
    agenda.schedule("b", {"n": 3}, T0 + timedelta(hours=1))  # deferred again while being dispatched
    agenda.done(claimed)
    assert agenda.pending() == 1
    [entry] = agenda.claim(T0 + timedelta(hours=1))
    assert entry.payload == {"n": 3}


def test_a_dead_dispatcher_loses_nothing(redis_client: redis.Redis) -> None:
    agenda = Agenda(redis_client, lease_ms=200)
    agenda.schedule_many((f"j{i}", {"i": i}, T0) for i in range(50))
    first = agenda.claim(T0, limit=20)  # ...and the dispatcher dies here
    assert len(first) == 20 and agenda.sweep() == 0, "leases still running"
    time.sleep(0.3)
    assert agenda.sweep() == 20
    recovered = agenda.claim(T0, limit=100)
    assert sorted(e.id for e in recovered) == sorted(f"j{i}" for i in range(50))
    agenda.done(recovered)
    assert agenda.pending() == 0


def test_cancel_drops_pending_entries(redis_client: redis.Redis) -> None:
    agenda = Agenda(redis_client)
    agenda.schedule_many([("a", {}, T0), ("b", {}, T0)])
    assert agenda.cancel(["a", "zzz"]) == 1
    assert [e.id for e in agenda.claim(T0)] == ["b"]


def test_entries_survive_a_redis_restart() -> None:
    directory = Path(tempfile.mkdtemp(prefix="dunning-aof-"))
    server = RedisServer(directory).start()
    try:
        client = redis.Redis.from_url(server.url)
        Agenda(client).schedule_many((f"j{i}", {"i": i}, T0) for i in range(100))
        client.close()
        server.stop()
        server = RedisServer(directory, server.port).start()
        client = redis.Redis.from_url(server.url)
        assert len(Agenda(client).claim(T0)) == 100
        client.close()
    finally:
        server.stop()


def test_the_dispatcher_queues_an_entry_as_kept_and_the_worker_reads_the_job_it_was(
        redis_client: redis.Redis, redis_server: object) -> None:
    """Due entries go to the queue as the agenda keeps them (their JSON, not read and
    written again: `broker.Encoded`), and what the worker takes off the queue is the
    payload that was scheduled, in a message dramatiq reads like any other."""
    import dramatiq

    from worker import loops
    from worker.clock import FixedClock
    from worker.queue.broker import QUEUE, make_broker

    payload = {"job": {"job_id": "INV-1/r", "debtor": {"name": "张伟", "note": "quote \" and \\\\ back"}},
               "attempt": 2, "first_tried": None}
    agenda = Agenda(redis_client)
    at = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    agenda.schedule("INV-1/r", payload, at)
    broker = make_broker(redis_server.url)  # type: ignore[attr-defined]
    assert loops.dispatch_once(agenda, broker, FixedClock(at)) == 1
    [(identity, data)] = redis_client.hgetall(f"dramatiq:{QUEUE}.msgs").items()
    message = dramatiq.Message.decode(data)
    assert message.args == (payload,) and message.actor_name == "remind" and message.queue_name == QUEUE
    assert message.options["redis_message_id"] == identity.decode() == message.message_id
    assert agenda.pending() == 0
