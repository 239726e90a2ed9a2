"""What the `dunning worker` parent process does beside its dramatiq children, each one
step of a supervised loop (`worker.supervisor`): the agenda's dispatcher, the intake
reconciler, the recovery of messages stranded in a live worker's acknowledgement set,
(with a webhook URL) the webhooks' dispatcher, and (with a checkpoint key) the log's
signed checkpoints. `parent_loops` is the list.

The dispatcher moves due entries onto the queue, in batches, crash-safely. It runs in
the `dunning worker` process (one per deployment is enough; several are safe: claims
are atomic). It decides nothing itself — the pipeline re-decides every job it
releases — so it only needs the clock to know what is due.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from schedules import Profiles
from worker.clock import Clock
from worker.contact_log import ContactLog
from worker.contact_log.checkpoints import Checkpoints
from worker.contact_log.note import Signer
from worker.jobs.book import JobBook
from worker.jobs.intake import reconcile
from worker.metrics import AGENDA_LATENESS
from worker.queue.agenda import Agenda
from worker.queue.broker import BATCH, Encoded, enqueue_many
from worker.queue.stranded import recover_stranded
from worker.supervisor import Loop
from worker.webhooks.dispatcher import Dispatcher

IDLE = 0.2  # seconds between looks at an agenda with nothing due
SWEEP_EVERY = 5.0
RECONCILE_EVERY = 30.0
STRANDED_EVERY = 10.0  # with `stranded.GRACE`: a message nobody holds is back within a minute


def dispatch_once(agenda: Agenda, broker: dramatiq.Broker, clock: Clock, batch: int = BATCH) -> int:
    """One batch of due entries to the queue. Its earliest entry's lateness is what is
    measured (`AGENDA_LATENESS`): entries come earliest first, so that is how far behind
    the dispatcher runs, at the cost of one observation a batch, not a thousand."""
    now = clock.now()
    entries = agenda.claim(now, batch)
    if entries:
        enqueue_many(broker, [Encoded(entry.raw) for entry in entries])  # as kept, not read and written again
        agenda.done(entries)
        AGENDA_LATENESS.observe(max(now.timestamp() - entries[0].due_ms / 1000, 0.0))
    return len(entries)


def dispatcher(agenda: Agenda, broker: dramatiq.Broker, clock: Clock) -> Callable[[], float]:
    """Due entries to the queue; claims whose dispatcher died go back (`Agenda.sweep`)."""
    last_sweep = [0.0]

    def step() -> float:
        if time.monotonic() - last_sweep[0] >= SWEEP_EVERY:
            agenda.sweep()
            last_sweep[0] = time.monotonic()
        return 0.0 if dispatch_once(agenda, broker, clock) >= BATCH else IDLE
    return step


def reconciler(jobs: JobBook, known: Profiles, broker: dramatiq.Broker, agenda: Agenda,
               clock: Clock) -> Callable[[], float]:
    """Jobs intake recorded and never queued (`worker.jobs.intake.reconcile`)."""
    def step() -> float:
        while reconcile(jobs, known, broker, agenda, clock.now()) > 0:
            pass
        return RECONCILE_EVERY
    return step


def stranded(broker: RedisBroker, after: timedelta) -> Callable[[], float]:
    """Messages sitting in a live worker's acknowledgement set longer than any message is
    held (`worker.queue.broker.recover_stranded`) go back to their queue."""
    seen: dict[tuple[str, str], float] = {}

    def step() -> float:
        recover_stranded(broker, seen, after.total_seconds())
        return STRANDED_EVERY
    return step


def checkpointer(checkpoints: Checkpoints, signer: Signer, clock: Clock, folder: Path | None,
                 every: float) -> Callable[[], float]:
    """A signed checkpoint of every chain's head, every `every` seconds while events come in."""
    def step() -> float:
        checkpoints.make(signer, clock.now(), folder)
        return every
    return step


def parent_loops(log: ContactLog, jobs: JobBook, known: Profiles, broker: RedisBroker, agenda: Agenda, clock: Clock,
                 stranded_after: timedelta, webhooks: Dispatcher | None,
                 checkpoints: Callable[[], float] | None = None) -> list[Loop]:
    """Every duty of the worker's parent, named for its health file and its log lines."""
    loops = [Loop("dispatcher", dispatcher(agenda, broker, clock)),
             Loop("reconciler", reconciler(jobs, known, broker, agenda, clock)),
             Loop("stranded", stranded(broker, stranded_after))]
    if webhooks is not None:
        loops.append(Loop("webhooks", webhooks.step))
    if checkpoints is not None:
        loops.append(Loop("checkpoints", checkpoints))
    return loops
