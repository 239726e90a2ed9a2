"""The console's "Verify": the hash chains recomputed, and the latest signed checkpoint
checked (the log must still pass through every head it saw), in a thread of the server, so a
large log neither blocks the page nor the server; the page shows progress while it
runs, and the last result (from the log: it is an `access` event with who asked, the
head `ID:DIGEST` and any broken events) when it does not."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from worker.contact_log import ContactLog
from worker.contact_log.checkpoints import Checkpoints
from worker.contact_log.kinds import AccessStatus, Event, Kind
from worker.contact_log.note import Checkpoint
from worker.contact_log.queries import event_count

logger = logging.getLogger("dunning.console")


@dataclass
class Run:
    by: str
    started_at: datetime
    total: int
    checked: int = 0
    done: threading.Event = field(default_factory=threading.Event)


class Verifier:
    """One verification at a time per server process."""

    def __init__(self, log: ContactLog, checkpoints: Checkpoints, now: Callable[[], datetime]) -> None:
        self.log, self.checkpoints, self.now = log, checkpoints, now
        self.run: Run | None = None
        self.lock = threading.Lock()

    def running(self) -> Run | None:
        run = self.run
        return run if run is not None and not run.done.is_set() else None

    def start(self, by: str, address: str) -> Run:
        with self.lock:
            if (run := self.running()) is not None:
                return run
            run = self.run = Run(by, self.now(), event_count(self.log.engine))
        threading.Thread(target=self._verify, args=(run, address), name="dunning-verify", daemon=True).start()
        return run

    def _verify(self, run: Run, address: str) -> None:
        try:
            note = self.checkpoints.latest()  # read first: the log must extend what it saw
            verdict = self.log.verify(progress=lambda n: setattr(run, "checked", n))
            problems = [*verdict.problems, *(self.checkpoints.check(note) if note is not None else [])]
            self.log.record(Event(Kind.ACCESS, AccessStatus.VERIFIED, detail={
                "user": run.by, "address": address, "intact": not problems, "head": verdict.head,
                "events": verdict.events, "chains": len(verdict.heads), "problems": problems[:50],
                "checkpoint": Checkpoint.in_note(note).at.isoformat() if note else None,
                "more_problems": max(len(problems) - 50, 0)}), self.now())
        except Exception:
            logger.exception("verifying the contact log failed")
        finally:
            run.done.set()
