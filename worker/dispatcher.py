"""The agenda's dispatcher: moves due entries onto the queue, in batches, crash-safely.

Runs in the `dunning worker` process (one per deployment is enough; several are safe:
claims are atomic). It decides nothing itself — the pipeline re-decides every job it
releases — so it only needs the clock to know what is due.
"""

from __future__ import annotations

import threading
import time

import dramatiq

from worker.agenda import Agenda
from worker.clock import Clock
from worker.queue import enqueue_many

BATCH = 1000


def dispatch_once(agenda: Agenda, broker: dramatiq.Broker, clock: Clock, batch: int = BATCH) -> int:
    entries = agenda.claim(clock.now(), batch)
    if entries:
        enqueue_many(broker, [entry.payload for entry in entries])
        agenda.done(entries)
    return len(entries)


def run(agenda: Agenda, broker: dramatiq.Broker, clock: Clock, stop: threading.Event, idle: float = 0.2,
        sweep_every: float = 5.0) -> None:
    last_sweep = 0.0
    while not stop.is_set():
        if time.monotonic() - last_sweep >= sweep_every:
            agenda.sweep()
            last_sweep = time.monotonic()
        if dispatch_once(agenda, broker, clock) < BATCH:
            stop.wait(idle)
