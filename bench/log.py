"""The contact log's write rate with W writers, against the same writers inserting the
same rows into the same table with no chain and no lock, in the same run.

    .venv/bin/python bench/log.py [--writers 1,2,4,8,16] [--seconds 4] [--batch 10]

Starts a PostgreSQL cluster of its own (`worker/local/postgres.py`) and a migrated log
with personal data sealed, as in production. Each writer is a process of its own (as
dramatiq's are), with its own engine and its own accounts; every transaction appends
`--batch` events (the group-commit writer's batch), realistic ones: a decision with
its reasons, a delivery's outcome with the provider's id, a reply with the sender's
address (sealed, blind-indexed). Chained: `Store.record` under the locks of the chains
of the batch's accounts and addresses, taken at once as the worker's group commit
takes them. Unchained: the same rows, sealed the same way, inserted with a fixed
digest and no lock. Prints events/s for each (best of two runs, in ABBA order), their
ratio, how many writers held chains' locks at once on average (the sum of every
writer's time between taking its locks and committing, over the run's length: with one
chain for the whole log this was ~1, every writer waiting for the one holder), and the
time locks were held per event.

Issue 24's goal: at 8 writers the chained log reaches ≥ 0.7× the unchained inserts and
≥ 2.5× its own 1-writer figure.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
ACCOUNTS = 40  # per writer: each account's data key is made while warming up


def events(writer: int, n: int) -> list[Any]:
    """`n` events of a writer's accounts, in the mix a reminder writes (decision, outcome, reply)."""
    from worker.contact_log.kinds import DeliveryStatus, Event, Kind

    made = []
    for i in range(n):
        account = f"W{writer}-A{i % ACCOUNTS}"
        invoice, job = f"{account}-INV-{i % 7}", f"{account}-INV-{i % 7}/due_day"
        kind = i % 3
        if kind == 0:
            made.append(Event(Kind.DECISION, "send", job_id=job, invoice_id=invoice, account_id=account,
                              detail={"action": "send", "channel": "email", "stage": "due_day",
                                      "reasons": ["inside the debtor's window 08:00-20:00 Asia/Shanghai",
                                                  "no contact in the last 7 days"],
                                      "rules": ["C-WINDOW", "C-CAP-7D"], "zones": ["Asia/Shanghai"]}))
        elif kind == 1:
            made.append(Event(Kind.DELIVERY, DeliveryStatus.SENT, job_id=job, invoice_id=invoice,
                              account_id=account, provider="smtp", provider_message_id=f"<{job}.{i}@dunning>"))
        else:
            made.append(Event(Kind.INBOUND, "other", account_id=account, provider="twilio",
                              provider_message_id=f"SM{writer:04d}{i:028d}", address=f"+861380013{i % 1000:04d}",
                              detail={"from": f"+861380013{i % 1000:04d}", "body": "I will pay on Friday",
                                      "replied": False}))
    return made


def write(writer: int, url: str, key: bytes, chained: bool, batch: int, seconds: float,
          ready: Any, go: Any, results: Any) -> None:
    """One writer process: warm up, wait for the start, append for `seconds`, report."""
    from worker.contact_log import ContactLog
    from worker.contact_log.appending import _INSERT_EVENT, flush  # the store's own insert and rows: the same rows
    from worker.contact_log.store import _row

    log = ContactLog.open(url, key)
    mine = events(writer, 3 * ACCOUNTS)
    with log.locked() as conn:  # every account's data key made before the clock starts
        for event in mine[:ACCOUNTS * 3]:
            log.record(event, NOW, conn)
    ready.release()
    go.wait()
    done, held, n = 0, 0.0, 0
    log.chain_count()
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end:
        chunk = [mine[(n + j) % len(mine)] for j in range(batch)]
        n += batch
        if chained:
            with log.engine.begin() as conn:  # the store takes the chains' locks as it inserts the batch
                for event in chunk:
                    log.record(event, NOW, conn)
                flush(conn)
                taken = conn.info["chains_locked_at"]  # when PostgreSQL held them (`dunning_append`)
            held += time.time() - taken
        else:
            with log.engine.begin() as conn:  # the same rows in one statement, as the store writes a batch
                conn.execute(_INSERT_EVENT, [{"address_index": None, **log.vault.seal_event(conn, _row(event, NOW)),
                                              "digest": "0" * 64} for event in chunk])
        done += batch
    results.put((done, held, time.perf_counter() - started))
    log.engine.dispose()


def run(url: str, key: bytes, writers: int, chained: bool, batch: int, seconds: float) -> tuple[float, float]:
    """Events per second of `writers` processes together, and the share of the run the lock was held."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    processes = [context.Process(target=write, args=(w, url, key, chained, batch, seconds, ready, go, results))
                 for w in range(writers)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    go.set()
    reports = []
    deadline = time.monotonic() + seconds + 120
    while len(reports) < len(processes):
        try:
            reports.append(results.get(timeout=1))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in processes) or time.monotonic() > deadline:
                raise SystemExit("a writer failed (its error is above)") from None
    for process in processes:
        process.join()
    wall = max(r[2] for r in reports)
    return sum(r[0] for r in reports) / wall, sum(r[1] for r in reports) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,2,4,8,16")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--chains", type=int, default=64, help="K for the log made here (DUNNING_LOG_CHAINS)")
    args = parser.parse_args()
    counts = [int(w) for w in args.writers.split(",")]

    from worker.contact_log import ContactLog
    from worker.local.postgres import Postgres

    cluster = Postgres(Path(tempfile.mkdtemp(prefix="dunning-bench-log-"))).start(
        f"max_connections={max(counts) + 20}")
    key = os.urandom(32)
    try:
        ContactLog.open(cluster.url, key).migrate(chains=args.chains).engine.dispose()
        print(f"PostgreSQL on loopback, {os.cpu_count()} cores; {args.chains} chains; {args.batch} events per "
              "transaction, "
              f"{args.seconds:g} s per run; master key {base64.b64encode(key)[:6].decode()}…", flush=True)
        run(cluster.url, key, 1, False, args.batch, 1.0)  # warm-up, not counted: the cluster's first writes
        run(cluster.url, key, 1, True, args.batch, 1.0)
        figures: dict[tuple[int, bool], float] = {}
        for writers in counts:  # ABBA, best of two each: the machine is shared and noisy
            first, (chained, held), (again, held_again), second = (
                run(cluster.url, key, writers, mode, args.batch, args.seconds)
                for mode in (False, True, True, False))
            plain = max(first[0], second[0])
            if again > chained:
                chained, held = again, held_again
            figures[(writers, False)], figures[(writers, True)] = plain, chained
            print(f"{writers:>2} writer(s): chained {chained:7.0f} events/s, unchained {plain:7.0f} events/s, "
                  f"ratio {chained / plain:4.2f}; locks held by {held:4.1f} writers at once, "
                  f"{held / chained * 1000:5.2f} ms per event", flush=True)
        top = 8 if 8 in counts else max(counts)
        one = figures.get((1, True))
        if one:
            print(f"chained at {top} writers / chained at 1 writer: {figures[(top, True)] / one:.2f}")
        print(f"chained at {top} writers: {figures[(top, True)]:.0f} events/s")
        print(f"unchained at {top} writers: {figures[(top, False)]:.0f} events/s")
        print(f"ratio chained/unchained at {top} writers: {figures[(top, True)] / figures[(top, False)]:.2f}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
