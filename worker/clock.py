"""The clock the worker decides by, injected: the wall clock in production, a shared
simulated one in the demo and the tests (so deferred jobs can come due on demand).

`SystemClock` is the one that reads the wall clock; `worker.wiring.clock` chooses.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import redis

CLOCK_KEY = "dunning:clock"


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class RedisClock:
    """A simulated clock shared by every process: a moment set by hand, which then runs
    at the speed of real time, as a wall clock would.

    Stored in Redis as the moment and the Redis server time it was set at, so every
    process reads the same time, and a short wait in the agenda (a send slot a few
    seconds ahead) comes due by itself while a long one (Monday 09:00) waits for
    whoever moves the clock. Redis is asked at most every `refresh` seconds of real
    time (a round trip per message would cost more than deciding it); in between, the
    elapsed monotonic time is added.
    """

    def __init__(self, client: redis.Redis, refresh: float = 0.1) -> None:
        self.client, self.refresh = client, refresh
        self._read_at, self._value = -1.0, datetime.min

    def now(self) -> datetime:
        if time.monotonic() - self._read_at > self.refresh:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.get(CLOCK_KEY)
                pipe.time()
                stored, (seconds, micros) = pipe.execute()
            if stored is None:
                raise RuntimeError(f"DUNNING_CLOCK=redis but {CLOCK_KEY} is not set")
            moment, _, set_at = (stored.decode() if isinstance(stored, bytes) else str(stored)).partition("|")
            self._value = datetime.fromisoformat(moment) + timedelta(seconds=seconds + micros / 1e6 - float(set_at))
            self._read_at = time.monotonic()
        return self._value + timedelta(seconds=time.monotonic() - self._read_at)

    def set(self, moment: datetime) -> None:
        if moment.utcoffset() is None:
            raise ValueError("the clock needs an aware datetime")
        seconds, micros = self.client.time()
        self.client.set(CLOCK_KEY, f"{moment.isoformat()}|{seconds}.{micros:06d}")
        self._read_at, self._value = time.monotonic(), moment


class FixedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment
