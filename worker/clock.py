"""The clock the worker decides by, injected: the wall clock in production, a shared
simulated one in the demo and the tests (so deferred jobs can come due on demand).

`SystemClock` lives in `worker.actors`, the layer allowed to read the wall clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import redis

CLOCK_KEY = "dunning:clock"


class Clock(Protocol):
    def now(self) -> datetime: ...


class RedisClock:
    """A simulated clock shared by every process: an ISO time stored in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def now(self) -> datetime:
        value = self.client.get(CLOCK_KEY)
        if value is None:
            raise RuntimeError(f"DUNNING_CLOCK=redis but {CLOCK_KEY} is not set")
        return datetime.fromisoformat(value.decode() if isinstance(value, bytes) else str(value))

    def set(self, moment: datetime) -> None:
        if moment.utcoffset() is None:
            raise ValueError("the clock needs an aware datetime")
        self.client.set(CLOCK_KEY, moment.isoformat())


class FixedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment
