"""Group commit: many reminders' writes in one transaction, each await returning once committed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection

from worker.contact_log import Claim, ContactLog
from worker.contact_log.kinds import Event, Kind
from worker.db.writer import LogWriter

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def claim(n: int) -> Claim:
    return Claim(f"J-{n}#email", f"J-{n}", f"INV-{n}", "ACME", "email", f"d{n}@example.com", "due_day",
                 "en-US/due_day.email.j2", "ab" * 32, ("r",), ("W-BIZ",), ("UTC",))


def events(log: ContactLog) -> list[tuple[str, str, str]]:
    with log.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT job_id, kind, status FROM events ORDER BY id"))]


def test_concurrent_writes_are_committed_and_their_results_returned(log: ContactLog) -> None:
    async def run() -> list[int]:
        writer = LogWriter(log.engine)
        try:
            deliveries = await asyncio.gather(*[
                writer(lambda c, n=n: log.claim(claim(n), NOW, decision={"action": "send"}, conn=c))
                for n in range(50)])
        finally:
            writer.close()
        return [d.id for d in deliveries if d.fresh]

    ids = asyncio.run(run())
    assert len(set(ids)) == 50
    written = events(log)
    assert written.count(("J-7", "decision", "send")) == 1 and written.count(("J-7", "delivery", "claimed")) == 1
    assert len(written) == 100
    assert log.verify().intact, "one transaction of 100 events links them in order"


def test_a_claim_already_made_in_the_same_batch_is_returned_not_claimed_twice(log: ContactLog) -> None:
    async def run() -> list[bool]:
        writer = LogWriter(log.engine)
        try:
            found = await asyncio.gather(*[writer(lambda c: log.claim(claim(1), NOW, conn=c)) for _ in range(5)])
        finally:
            writer.close()
        return [d.fresh for d in found]

    assert sorted(asyncio.run(run())) == [False, False, False, False, True]
    assert events(log) == [("J-1", "delivery", "claimed")]


def test_one_failing_write_fails_alone_and_the_others_are_kept(log: ContactLog) -> None:
    def broken(conn: Connection) -> None:
        log.record(Event(Kind.DECISION, "send", job_id="BAD"), NOW, conn)
        raise RuntimeError("this write is broken")

    async def run() -> list[object]:
        writer = LogWriter(log.engine)
        try:
            writes = [writer(lambda c, n=n: log.record(Event(Kind.DECISION, "skip", job_id=f"J-{n}"), NOW, c))
                      for n in range(3)]
            writes.insert(1, writer(broken))
            return await asyncio.gather(*writes, return_exceptions=True)
        finally:
            writer.close()

    results = asyncio.run(run())
    assert isinstance(results[1], RuntimeError) and [r for r in results if r is not results[1]] == [None] * 3
    assert sorted(events(log)) == [("J-0", "decision", "skip"), ("J-1", "decision", "skip"),
                                   ("J-2", "decision", "skip")]  # the broken write left nothing behind
    assert log.verify().intact, "the rolled-back batch's links are not built on"


def test_writers_on_sqlite_take_turns_across_processes_and_threads(tmp_path: Path) -> None:
    """A turn (`worker.db.turns`) is held by one writer at a time, whether the others are
    threads of its process or processes forked from it (which open the file anew: a
    shared open file would let both in). Each holder writes "in" and "out" to one file;
    any overlap shows as two "in"s in a row."""
    import multiprocessing
    import threading

    from worker.db.schema import open_engine
    from worker.db.turns import turns

    engine = open_engine(f"sqlite:///{tmp_path}/log.db")
    turn, trace = turns(engine), tmp_path / "trace"
    assert turns(engine) is turn and turn.path == f"{tmp_path}/log.db-turns"

    def take(times: int) -> None:
        for _ in range(times):
            with turn():
                for word in ("in", "out"):
                    with open(trace, "a") as out:
                        out.write(f"{word}\n")
                    time.sleep(0.0005)  # long enough for another holder to step in, if it could

    with turn():  # the parent's own file, opened before the fork
        pass
    children = [multiprocessing.get_context("fork").Process(target=take, args=(40,)) for _ in range(2)]
    threads = [threading.Thread(target=take, args=(40,)) for _ in range(2)]
    for started in (*children, *threads):
        started.start()
    for ended in threads:
        ended.join()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    words = trace.read_text().split()
    assert len(words) == 4 * 40 * 2
    assert words == ["in", "out"] * (4 * 40), "one holder at a time"


def test_a_database_in_memory_or_on_postgresql_has_no_turns() -> None:
    from sqlalchemy import create_engine

    from worker.db.turns import turns

    assert turns(create_engine("sqlite://")).path is None
    assert turns(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")).path is None
