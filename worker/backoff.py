"""How long to wait before trying again, in one place: waits that double from a first
wait up to a cap. Three are used: `OUTAGE` while Redis or the database is away (the
worker waits in process, the supervisor's loops, an outcome kept for the log),
`REMINDER` when a provider's failure is transient (the agenda brings the job back),
and `WEBHOOK` when the billing system's endpoint did not take a webhook (jittered, so
a recovering endpoint is not hit by every retry at once; given up after `WEBHOOK_FOR`).
The Twilio client's quick retries of a 429 are the channel's own (`channels/twilio_api.py`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Backoff:
    first: float  # seconds
    cap: float  # seconds

    def wait(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th failure (1 for the first)."""
        return min(self.first * 2.0 ** max(attempt - 1, 0), self.cap)

    def after(self, attempt: int) -> timedelta:
        return timedelta(seconds=self.wait(attempt))

    def jittered(self, attempt: int, rng: random.Random) -> timedelta:
        """`after`, spread over ±20% so that retries made together do not stay together."""
        return timedelta(seconds=self.wait(attempt) * rng.uniform(0.8, 1.2))

    def waits(self) -> Iterator[float]:
        """The waits after the first, second, ... failure, without end."""
        attempt = 1
        while True:
            yield self.wait(attempt)
            attempt += 1


OUTAGE = Backoff(0.5, 30.0)
REMINDER = Backoff(30 * 60.0, 6 * 3600.0)
WEBHOOK = Backoff(5.0, 6 * 3600.0)  # 5 s, 10 s, 20 s ... 5.7 h, then every 6 h
WEBHOOK_FOR = timedelta(days=3)
