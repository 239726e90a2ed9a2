"""The simulated clock shared through Redis (demo, tests): every process reads the same
time, and from the moment it is set it runs at real speed, so a short wait in the
agenda comes due by itself."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from worker.clock import RedisClock

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def test_set_by_one_process_read_by_another_and_running_from_there(redis_client: redis.Redis) -> None:
    setter, reader = RedisClock(redis_client), RedisClock(redis_client, refresh=0.0)
    setter.set(T0)
    first = reader.now()
    assert T0 <= first < T0 + timedelta(seconds=1)
    time.sleep(0.5)
    later = reader.now()
    assert timedelta(seconds=0.45) <= later - first < timedelta(seconds=1.5), "it runs at the speed of real time"
    assert abs(setter.now() - later) < timedelta(seconds=0.2), "both processes read the same time"


def test_moving_it_by_hand_reaches_every_reader_within_the_refresh(redis_client: redis.Redis) -> None:
    setter, reader = RedisClock(redis_client), RedisClock(redis_client, refresh=0.1)
    setter.set(T0)
    assert reader.now() < T0 + timedelta(seconds=1)
    setter.set(T0 + timedelta(days=3))
    time.sleep(0.15)
    assert T0 + timedelta(days=3) <= reader.now() < T0 + timedelta(days=3, seconds=1)


def test_an_unset_clock_and_a_naive_moment_are_refused(redis_client: redis.Redis) -> None:
    clock = RedisClock(redis_client)
    redis_client.delete("dunning:clock")
    with pytest.raises(RuntimeError, match="dunning:clock is not set"):
        clock.now()
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2026, 12, 7, 9, 0))  # noqa: DTZ001 (the mistake under test)
