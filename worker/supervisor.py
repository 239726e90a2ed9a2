"""The `dunning worker` process's own loops, kept alive: the agenda's dispatcher, the
intake reconciler, the recovery of stranded messages.

Each loop is a `step` called again and again. A step that raises (Redis restarting,
the database away) is retried with backoff, 0.5 s doubling to 30 s, and the loop comes
back by itself when its dependency does; nothing a dependency does can end it. A
thread that dies all the same (a bug below `step`) is started again, up to
`MAX_RESTARTS` within ten minutes; past that `Supervisor.watch` returns non-zero and
the process exits, so systemd or Kubernetes start a fresh one.

The health of every loop (last success, the current failure) is written to a small
JSON file that `dunning worker --check` reads: a probe for systemd or Kubernetes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.backoff import OUTAGE, Backoff
from worker.metrics import LOOP_FAILURES, LOOP_RESTARTS

logger = logging.getLogger("dunning.worker")

MAX_RESTARTS = 5
STALE_AFTER = 60.0  # a loop with no success for this long is unhealthy


@dataclass
class Loop:
    """A named background loop. `step` does one round and returns how long to wait
    before the next (0: more is waiting now)."""

    name: str
    step: Callable[[], float]
    last_ok: float = 0.0  # wall-clock seconds; set when the supervisor starts the loop
    failing_since: float | None = None
    error: str | None = None
    restarts: list[float] = field(default_factory=list)
    thread: threading.Thread | None = None


class Supervisor:
    """`wall` is the wall clock (seconds since the epoch), given by the entry point: the
    health file is read by another process (`check`), so it says times, not durations."""

    def __init__(self, loops: list[Loop], stop: threading.Event, wall: Callable[[], float],
                 health_file: Path | None = None, backoff: Backoff = OUTAGE) -> None:
        self.loops, self.stop, self.wall, self.health_file = loops, stop, wall, health_file
        self.backoff = backoff

    def start(self) -> None:
        for loop in self.loops:
            loop.last_ok = self.wall()
            self._spawn(loop)

    def _spawn(self, loop: Loop) -> None:
        loop.thread = threading.Thread(target=self._run, args=(loop,), name=f"dunning-{loop.name}", daemon=True)
        loop.thread.start()

    def _run(self, loop: Loop) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                wait = loop.step()
            except Exception as error:  # an outage: back off, try again; never let it end the loop
                LOOP_FAILURES.labels(loop.name).inc()
                now = self.wall()
                if loop.failing_since is None:
                    loop.failing_since = now
                    logger.warning("%s: %s; retrying with backoff", loop.name, brief(error))
                loop.error = brief(error)
                failures += 1
                self.stop.wait(self.backoff.wait(failures))
                continue
            if loop.failing_since is not None:
                logger.warning("%s: working again after %.0f s", loop.name, self.wall() - loop.failing_since)
            loop.last_ok, loop.failing_since, loop.error = self.wall(), None, None
            failures = 0
            if wait > 0:
                self.stop.wait(wait)

    def watch(self, child_alive: Callable[[], bool], every: float = 1.0) -> int:
        """Until `stop` is set: restart dead loops, write the health file. Returns the exit
        code: 0 when stopped, 1 when a loop kept dying or the child processes are gone."""
        while not self.stop.is_set():
            if not child_alive():
                logger.error("the dramatiq worker processes have exited; stopping")
                return 1
            for loop in self.loops:
                if loop.thread is not None and not loop.thread.is_alive() and not self.stop.is_set():
                    now = self.wall()
                    loop.restarts = [t for t in loop.restarts if now - t < 600] + [now]
                    if len(loop.restarts) > MAX_RESTARTS:
                        logger.error("%s died %d times in 10 minutes; exiting so that the process is restarted",
                                     loop.name, len(loop.restarts))
                        return 1
                    logger.error("%s died; starting it again", loop.name)
                    LOOP_RESTARTS.labels(loop.name).inc()
                    self._spawn(loop)
            self.write_health()
            self.stop.wait(every)
        return 0

    def health(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "written_at": self.wall(),
                "loops": {loop.name: {"last_ok": loop.last_ok, "failing_since": loop.failing_since,
                                      "error": loop.error, "alive": bool(loop.thread and loop.thread.is_alive())}
                          for loop in self.loops}}

    def write_health(self) -> None:
        if self.health_file is None:
            return
        try:
            self.health_file.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.health_file.with_suffix(".tmp")
            scratch.write_text(json.dumps(self.health()))
            scratch.replace(self.health_file)
        except OSError as error:
            logger.warning("cannot write the health file %s: %s", self.health_file, error.strerror)


def check(health_file: Path, now: float) -> list[str]:
    """What is wrong with the worker that writes `health_file` (empty: healthy) at `now`
    (wall-clock seconds)."""
    try:
        health = json.loads(health_file.read_text())
    except (OSError, ValueError):
        return [f"{health_file}: no health file (is `dunning worker` running here, with this DUNNING_HEALTH_FILE?)"]
    problems = []
    silent = now - health["written_at"]
    if silent > 10:
        problems.append(f"the worker (pid {health['pid']}) last wrote its health {silent:.0f} s ago")
    for name, loop in health["loops"].items():
        if not loop["alive"]:
            problems.append(f"{name}: not running")
        elif loop["failing_since"] is not None and now - loop["last_ok"] > STALE_AFTER:
            problems.append(f"{name}: failing for {now - loop['failing_since']:.0f} s: {loop['error']}")
    return problems


def brief(error: BaseException) -> str:
    """An error for the log: its type and first line, short (no payloads, no personal data)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__
