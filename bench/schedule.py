"""The Schedule page's forecast: every pending step in the agenda decided as the worker
would decide it then (facts read from the contact log, `decide`), against a floor
measured in the same run — reading the same entries from Redis and parsing their jobs.

    .venv/bin/python bench/schedule.py [--steps 5000]

A private redis-server and a SQLite contact log; `--steps` deferred jobs spread over
the next ten days. Goal: the page's limit (5,000 steps, `forecast.LIMIT`) within a few
seconds on this machine — it is an operator's page, read a few times a day.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker import wiring  # noqa: E402
from worker.jobs.parse import parse_job  # noqa: E402
from worker.jobs.samples import FOLDER, many  # noqa: E402
from worker.local.stack import Stack  # noqa: E402
from worker.pipeline import forecast  # noqa: E402
from worker.policy import profiles  # noqa: E402
from worker.queue.envelope import envelope_for  # noqa: E402
from worker.settings import Settings  # noqa: E402

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dunning-bench-schedule-") as scratch:
        stack = Stack(Path(scratch)).start()
        try:
            log = wiring.log(Settings.from_env(stack.env()), migrate=True)
            template = json.loads(FOLDER.joinpath("portfolio.jsonl").read_text(encoding="utf-8").splitlines()[0])
            jobs = [parse_job(data, profiles(), "bench").job for data in many(template, args.steps, "S")]
            stack.agenda.schedule_many([(job.job_id, envelope_for(job), NOW + timedelta(days=1 + i % 10))
                                        for i, job in enumerate(jobs) if job is not None])
            horizon = NOW + timedelta(days=forecast.HORIZON_DAYS)
            started = time.perf_counter()
            floor = [parse_job(payload["job"], profiles(), "bench")
                     for _, _, payload in stack.agenda.upcoming(horizon, args.steps)]
            floor_s = time.perf_counter() - started
            started = time.perf_counter()
            plan = forecast.plan(stack.agenda, log, NOW, limit=args.steps)
            plan_s = time.perf_counter() - started
            log.engine.dispose()
        finally:
            stack.stop()
    print(f"{len(floor)} pending steps: forecast {plan_s:.2f} s ({plan_s / len(floor) * 1e3:.2f} ms a step), "
          f"{sum(plan.counts.values())} sends counted")
    print(f"floor (read and parse the same entries): {floor_s:.2f} s; forecast/floor {plan_s / floor_s:.1f}x")


if __name__ == "__main__":
    main()
