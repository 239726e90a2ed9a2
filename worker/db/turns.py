"""Writers on SQLite take turns, woken in order, instead of polling for the file's lock.

SQLite lets one connection write at a time. One that finds the lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10... up to 100 ms between tries however
soon the lock is let go, while a writer that commits and begins again at once takes
it straight back. Two worker processes writing the log spent most of their waiting
there: 172 reminders/s with a third of the machine idle (bench/throughput.py, issue 25).

A write transaction that takes its turn first — an exclusive `flock` on a file beside
the database, which the kernel hands to the next waiter the moment it is let go, and
a lock for the threads of one process — does not find the database locked by another
turn-taker, and does not sleep. Writers that take no turn (the CLI's one-off
statements) still meet the busy handler, as before. On PostgreSQL, and for a database
in memory, a turn is nothing: a row lock's waiter is woken as it is let go.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine


class Turns:
    def __init__(self, engine: Engine) -> None:
        database = engine.url.database
        sqlite_file = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
        self.path = f"{database}-turns" if sqlite_file else None
        self._threads = threading.RLock()
        self._depth = 0
        self._file: tuple[int, int] | None = None  # (pid, fd): a forked child opens its own

    @contextmanager
    def __call__(self) -> Iterator[None]:
        """Hold the turn: the caller's write transaction goes inside."""
        if self.path is None:
            yield
            return
        with self._threads:
            if self._depth == 0:
                fcntl.flock(self._fd(), fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd(), fcntl.LOCK_UN)

    def _fd(self) -> int:
        """This process's own open file: `flock` excludes other open files, not other
        holders of the same one (a child forked with it would share the turn)."""
        assert self.path is not None
        if self._file is None or self._file[0] != os.getpid():
            self._file = (os.getpid(), os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        return self._file[1]


_TURNS: weakref.WeakKeyDictionary[Engine, Turns] = weakref.WeakKeyDictionary()
_MADE = threading.Lock()


def turns(engine: Engine) -> Turns:
    """The one `Turns` of an engine."""
    with _MADE:
        found = _TURNS.get(engine)
        if found is None:
            found = _TURNS[engine] = Turns(engine)
        return found
