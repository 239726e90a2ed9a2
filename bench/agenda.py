"""The agenda under a large backlog: 1,000,000 deferred jobs, released when due.

    .venv/bin/python bench/agenda.py [--jobs 1000000]

Schedules the jobs (realistic payloads, due times spread over a week) into a private
redis-server, then runs the dispatcher in a separate process with the clock past
every due time and measures how fast it releases them into the dramatiq queue and the
dispatcher's peak memory (its own RSS; the backlog lives in Redis). Goals: memory
under 150 MB whatever the backlog, ≥ 10,000 due jobs released per second.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from worker.local.redis_server import RedisServer  # noqa: E402
from worker.queue.agenda import Agenda  # noqa: E402

START = datetime.fromisoformat("2026-12-07T09:00:00+08:00")


def schedule(url: str, count: int) -> float:
    template = json.loads((ROOT / "worker/jobs/samples/portfolio.jsonl").read_text(encoding="utf-8").splitlines()[0])
    agenda = Agenda(redis.Redis.from_url(url))

    def entries():  # type: ignore[no-untyped-def]
        for n in range(count):
            job = copy.deepcopy(template)
            job["job_id"] = f"AG-{n}"
            yield f"AG-{n}", {"job": job, "attempt": 0, "first_tried": None}, START + timedelta(seconds=n % 604800)

    began = time.perf_counter()
    agenda.schedule_many(entries())
    return time.perf_counter() - began


def dispatch(url: str, count: int) -> None:
    """Child process: release everything that is due, report rate and peak memory."""
    from worker import loops
    from worker.clock import FixedClock
    from worker.queue.broker import make_broker

    client = redis.Redis.from_url(url)
    agenda, broker = Agenda(client), make_broker(url)
    clock = FixedClock(START + timedelta(days=8))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    released, began = 0, time.perf_counter()
    while released < count:
        moved = loops.dispatch_once(agenda, broker, clock)
        if moved == 0:
            break
        released += moved
    elapsed = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"released": released, "seconds": elapsed, "peak_mb": peak, "baseline_mb": baseline}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dispatch(args.child, args.jobs)
        return
    server = RedisServer(Path(tempfile.mkdtemp(prefix="dunning-agenda-"))).start()
    try:
        scheduled = schedule(server.url, args.jobs)
        client = redis.Redis.from_url(server.url)
        memory = int(client.info("memory")["used_memory"]) / 2**20
        result = subprocess.run([sys.executable, __file__, "--jobs", str(args.jobs), "--child", server.url],
                                capture_output=True, text=True, check=True)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        queued = int(client.hlen("dramatiq:reminders.msgs"))
    finally:
        server.stop()
    rate = figures["released"] / figures["seconds"]
    print(f"agenda: {args.jobs:,} deferred jobs scheduled in {scheduled:.1f} s ({args.jobs / scheduled:,.0f}/s); "
          f"Redis holds them in {memory:,.0f} MB")
    print(f"dispatcher: released {figures['released']:,} into the queue ({queued:,} there) in "
          f"{figures['seconds']:.1f} s = {rate:,.0f} jobs/s")
    print(f"dispatcher memory: peak {figures['peak_mb']:.0f} MB (at start {figures['baseline_mb']:.0f} MB)")
    print(f"goals: memory < 150 MB {'met' if figures['peak_mb'] < 150 else 'NOT met'}, "
          f">= 10,000 jobs/s {'met' if rate >= 10_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
