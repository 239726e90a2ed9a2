"""The floor for bench/throughput.py: dramatiq's own cost per message, same broker and settings."""

from __future__ import annotations

import os

import dramatiq

from worker.queue.broker import make_broker

broker = make_broker(os.environ["DUNNING_REDIS_URL"])
broker.declare_queue("noop")
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="noop")
async def noop(payload: dict) -> None:  # type: ignore[type-arg]
    return None
