"""Provider rate limits: one bucket per sender in Redis, shared by every worker process.

A US long code sends one SMS segment per second, a short code 100, an account one
call per second (COMPLIANCE.md); faster, and the carrier queues or drops. Each send
*reserves* its slot — the sender's next free moment, advanced by the message's cost
(a two-segment text takes two seconds of a long code) — so the order is kept and no
job polls. A job whose slot is in the future goes back to wait for it (the pipeline's
short wait, not a sleeping thread) and sends without reserving again when it returns.

The bucket runs on Redis server time (`TIME`): rate limits are physical seconds shared
across machines, unlike the decision clock, which the demo and tests move at will.
"""

from __future__ import annotations

import redis

from channels.base import Rate

# KEYS[1]: the sender's next free moment (µs since the epoch). ARGV: cost and tolerance in µs.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(free, now)
local nxt = start + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 60000)
local wait = start - now
if wait <= tonumber(ARGV[2]) then return 0 end
return wait
"""


class Throttle:
    def __init__(self, client: redis.Redis, prefix: str = "dunning:rate") -> None:
        self.prefix = prefix
        self._reserve = client.register_script(_RESERVE)

    def reserve(self, rate: Rate, cost: int) -> float:
        """Reserve `cost` units of the sender's throughput; seconds until the slot (0: go now).

        A second's worth of a fast sender may go at once (100 segments of a short code);
        a long code's bucket holds one segment, so its texts go one by one.
        """
        interval = 1_000_000 / rate.per_second
        tolerance = max(rate.per_second - 1, 0) * interval
        wait = int(self._reserve(keys=[f"{self.prefix}:{rate.sender}"], args=[int(cost * interval), int(tolerance)]))
        return wait / 1_000_000
