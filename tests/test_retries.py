"""What dramatiq retries: an outage (database, Redis, network) is tried again; a bug is
not, since it would fail the same way ten times: its message fails at once. On a real
redis-server with the broker's own middleware (`worker.queue.broker.make_broker`)."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import pytest
import redis
import sqlalchemy.exc
from dramatiq.common import xq_name
from dramatiq.middleware import Shutdown

from worker.queue.broker import MAX_RETRIES, make_broker, worth_retrying

OUTAGES = [sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database is locked")),
           redis.exceptions.ConnectionError("Connection refused"), ConnectionResetError(), TimeoutError(),
           Shutdown()]
BUGS = [TypeError("unsupported operand"), KeyError("job"), AssertionError(), ValueError("bad value"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed"))]


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
def test_an_outage_is_retried_up_to_the_limit(error: BaseException) -> None:
    assert worth_retrying(0, error) and worth_retrying(MAX_RETRIES - 1, error)
    assert not worth_retrying(MAX_RETRIES, error)


@pytest.mark.parametrize("error", BUGS, ids=lambda e: type(e).__name__)
def test_a_bug_is_not_retried(error: BaseException) -> None:
    assert not worth_retrying(0, error)


def test_a_message_whose_actor_has_a_bug_fails_at_once(redis_server: Any) -> None:
    broker = make_broker(redis_server.url, heartbeat_ms=5_000)
    calls: list[int] = []
    done = threading.Event()

    @dramatiq.actor(broker=broker, queue_name="retries-test")
    def buggy() -> None:
        calls.append(1)
        done.set()
        raise TypeError("a bug")

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        buggy.send()
        assert done.wait(10)
        broker.join("retries-test", timeout=10_000)
    finally:
        worker.stop()
        broker.close()
    assert calls == [1], "tried once, not again after a backoff"
    client = redis.Redis.from_url(redis_server.url)
    assert client.zcard(f"dramatiq:{xq_name('retries-test')}") == 1, "kept in dramatiq's dead letters"
    client.close()
