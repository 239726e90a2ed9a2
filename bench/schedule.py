"""The Schedule page's forecast: every pending step in the agenda decided as the worker
would decide it then (facts read from the contact log, `decide`), against a floor
measured in the same run — reading the same entries from Redis and parsing their jobs.

    .venv/bin/python bench/schedule.py [--steps 10000]

A private redis-server and a SQLite contact log; `--steps` deferred jobs (intake's rows
too) spread over the next ten days. Goals (issue 22) with 10,000 pending steps: the page
under 1 s, one invoice's steps under 200 ms, a pause under 300 ms. Prints a load with
nothing read ahead (every job parsed), `serve`'s read-ahead as it starts, a load after
it (the serving process keeps parsed jobs: every load), one invoice's steps, and a
pause, beside the floor of reading and parsing the entries.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker import wiring  # noqa: E402
from worker.events import Events  # noqa: E402
from worker.jobs.book import JobBook, JobRow  # noqa: E402
from worker.jobs.parse import parse_job  # noqa: E402
from worker.jobs.samples import FOLDER, many  # noqa: E402
from worker.local.stack import Stack  # noqa: E402
from worker.pipeline import forecast  # noqa: E402
from worker.policy import profiles  # noqa: E402
from worker.queue.envelope import envelope_for  # noqa: E402
from worker.settings import Settings  # noqa: E402

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dunning-bench-schedule-") as scratch:
        stack = Stack(Path(scratch)).start()
        try:
            log = wiring.log(Settings.from_env(stack.env()), migrate=True)
            template = json.loads(FOLDER.joinpath("portfolio.jsonl").read_text(encoding="utf-8").splitlines()[0])
            parsed = [parse_job(data, profiles(None), "bench").job for data in many(template, args.steps, "S")]
            jobs = [job for job in parsed if job is not None]
            rows = [JobRow(j.job_id, j.invoice.id, j.debtor.account_id, j.model_dump_json()) for j in jobs]
            JobBook(log).take_jobs(rows, NOW)
            stack.agenda.schedule_many([(job.job_id, envelope_for(job), NOW + timedelta(days=1 + i % 10))
                                        for i, job in enumerate(jobs)])
            horizon = NOW + timedelta(days=forecast.HORIZON_DAYS)
            floor_s, floor = timed(lambda: [parse_job(payload["job"], profiles(None), "bench")
                                            for _, _, payload in stack.agenda.upcoming(horizon, args.steps)])
            cold_s, plan = timed(lambda: forecast.plan(stack.agenda, log, profiles(None), NOW, limit=args.steps))
            forecast._PARSED.clear()
            ahead_s, _ = timed(lambda: forecast.warm(stack.agenda, log, profiles(None), NOW, limit=args.steps))
            warm_s, _ = timed(lambda: forecast.plan(stack.agenda, log, profiles(None), NOW, limit=args.steps))
            one = jobs[len(jobs) // 2].invoice.id
            invoice_s, steps = timed(lambda: forecast.pending_of(stack.agenda, log, profiles(None), [one], NOW))
            events = Events(log, stack.agenda)
            pause_s, _ = timed(lambda: events.pause(one, NOW, by="bench", reason="bench"))
            log.engine.dispose()
        finally:
            stack.stop()
    print(f"{len(floor)} pending steps, {sum(plan.counts.values())} sends counted")
    print(f"floor: read the entries and parse their jobs           {floor_s:6.2f} s")
    print(f"the Schedule page's forecast, nothing read ahead      {cold_s:6.2f} s  {cold_s / floor_s:4.1f}x the floor")
    print(f"serve's read-ahead as it starts (in the background)    {ahead_s:6.2f} s  "
          f"{ahead_s / floor_s:4.1f}x the floor")
    print(f"the Schedule page's forecast, after it (every load)    {warm_s:6.2f} s  {warm_s / floor_s:4.1f}x the floor"
          f"  (goal < 1 s: {'met' if warm_s < 1 else 'NOT met'})")
    print(f"one invoice's pending steps ({len(steps)})                  {invoice_s * 1000:6.0f} ms"
          f"  (goal < 200 ms: {'met' if invoice_s < 0.2 else 'NOT met'})")
    print(f"pause an invoice                                       {pause_s * 1000:6.0f} ms"
          f"  (goal < 300 ms: {'met' if pause_s < 0.3 else 'NOT met'})")


def timed(work: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    done = work()
    return time.perf_counter() - started, done


if __name__ == "__main__":
    main()
