"""The clock the worker decides by, injected: the wall clock in production, a shared
simulated one in the demo and the tests (so deferred jobs can come due on demand).

`SystemClock` lives in `worker.actors`, the layer allowed to read the wall clock.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

import redis

CLOCK_KEY = "dunning:clock"


class Clock(Protocol):
    def now(self) -> datetime: ...


class RedisClock:
    """A simulated clock shared by every process: an ISO time stored in Redis.

    Read at most every `refresh` seconds of real time: a Redis round trip per message
    would cost more than deciding it, and whoever moves the clock waits longer than that.
    """

    def __init__(self, client: redis.Redis, refresh: float = 0.1) -> None:
        self.client, self.refresh = client, refresh
        self._read_at, self._value = -1.0, datetime.min

    def now(self) -> datetime:
        if time.monotonic() - self._read_at > self.refresh:
            value = self.client.get(CLOCK_KEY)
            if value is None:
                raise RuntimeError(f"DUNNING_CLOCK=redis but {CLOCK_KEY} is not set")
            self._value = datetime.fromisoformat(value.decode() if isinstance(value, bytes) else str(value))
            self._read_at = time.monotonic()
        return self._value

    def set(self, moment: datetime) -> None:
        if moment.utcoffset() is None:
            raise ValueError("the clock needs an aware datetime")
        self.client.set(CLOCK_KEY, moment.isoformat())
        self._read_at, self._value = time.monotonic(), moment


class FixedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment
