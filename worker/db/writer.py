"""Group commit for the contact log: one writer thread per worker process.

The pipeline runs on one event loop per process. Writing the log from that loop
would stop every other reminder of the process while a transaction commits, and on
SQLite while it waits for the other processes' write lock (SQLite's busy handler
sleeps in steps of milliseconds). Instead, the loop hands each write to this thread
and awaits it; the thread takes every write waiting at that moment and commits them
in one transaction. A reminder's write is durable when its await returns, exactly as
with a transaction of its own, so what the log proves does not change.

If a batch fails, its writes are committed again one by one, so one bad write fails
only its own reminder.

On SQLite the batch waits its turn among the other processes' writers
(`worker.db.turns`), woken as the one before commits, not polling for the lock.

Each write says which of the log's chains it appends to (and which addresses' chains
it checks under): the batch takes all their locks first, at once and in order
(`Store.lock`), so two processes' batches never wait for each other in a circle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from worker.db.turns import turns
from worker.metrics import LOCK_HOLD, LOCK_WAIT

T = TypeVar("T")
Write = Callable[[Connection], Any]
Lock = Callable[[Connection, Collection[int]], None]
Item = tuple[Write, Collection[int], concurrent.futures.Future[Any]]

logger = logging.getLogger(__name__)


class LogWriter:
    def __init__(self, engine: Engine, lock: Lock | None = None, max_batch: int = 256) -> None:
        self.engine = engine
        self.lock = lock  # takes chains' locks in a transaction (`Store.lock`)
        self.max_batch = max_batch
        self._conn: Connection | None = None  # the writer thread's own (`_connection`)
        self.turn = turns(engine)  # SQLite: the other processes' writers, in order (`worker.db.turns`)
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="contact-log-writer", daemon=True)
        self._thread.start()

    async def __call__(self, write: Callable[[Connection], T], chains: Collection[int] = ()) -> T:
        """Run `write` in the next group transaction, holding the locks of `chains`; return
        its result once committed."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((write, chains, future))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
        self._drop()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)
            if item is None:
                return

    def _connection(self) -> Connection:
        """The thread's own connection, kept from batch to batch (a pool checkout and its
        events for every batch cost more than the batch's commit)."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 (already broken: nothing to keep)
                logger.debug("closing a failed writer connection", exc_info=True)
            self._conn = None

    def _commit(self, batch: list[Item]) -> None:
        try:
            conn = self._connection()
            asked = time.perf_counter()
            with self.turn(), conn.begin():
                if self.lock is not None:
                    self.lock(conn, {number for _, chains, _ in batch for number in chains})
                held = time.perf_counter()
                results = [write(conn) for write, _, _ in batch]
            LOCK_WAIT.observe(held - asked)
            LOCK_HOLD.observe(time.perf_counter() - held)
        except Exception as error:
            self._drop()  # whatever went wrong, the next batch starts on a fresh connection
            if len(batch) == 1:
                batch[0][2].set_exception(error)
                return
            logger.warning("a group commit of %d writes failed (%s); committing them one by one",
                           len(batch), type(error).__name__)
            for item in batch:
                self._commit([item])
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            future.set_result(result)
