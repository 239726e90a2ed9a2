"""Email reminders end to end, against dramatiq's no-op floor measured in the same run.

    .venv/bin/python bench/throughput.py [--jobs 20000] [--processes 2] [--threads 8]

Starts redis-server, an aiosmtpd SMTP server on loopback (it writes every message to
disk, as the demo's does) and a SQLite contact log; runs `dunning worker` with N
processes × M threads over `--jobs` pre-due email reminders, from the first enqueue
to the last acknowledgement; then runs dramatiq with the same broker, middleware,
processes and threads over the same number of no-op messages. Prints both rates and
their ratio. Goal on the 2-core machine: ≥ 1,000 reminders/s and a ratio ≥ 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.contact_log import ContactLog  # noqa: E402
from worker.jobs.intake import submit  # noqa: E402
from worker.jobs.parse import parse_job  # noqa: E402
from worker.jobs.samples import many  # noqa: E402
from worker.local.stack import Stack  # noqa: E402
from worker.policy import profiles  # noqa: E402
from worker.queue.broker import backlog, enqueue_many, make_broker  # noqa: E402

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
TEMPLATE = json.loads((ROOT / "worker/jobs/samples/portfolio.jsonl").read_text(encoding="utf-8").splitlines()[0])



def wait_drained(broker, queue_backlog, expected_done, started: float, timeout: float = 900) -> float:  # type: ignore[no-untyped-def]
    while time.perf_counter() - started < timeout:
        if queue_backlog() == 0 and expected_done():
            return time.perf_counter() - started
        time.sleep(0.05)
    raise TimeoutError("did not drain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="dunning-bench-"))
    stack = Stack(directory).start()
    try:
        env = stack.env()
        os.environ.update(env)
        log = ContactLog.open(env["DUNNING_DATABASE_URL"]).migrate()
        stack.set_clock(NOW)
        parsed = [parse_job(job, profiles(), "bench") for job in many(TEMPLATE, args.jobs, "BENCH", "pre_due_7")]

        worker = stack.start_worker(args.processes, args.threads)
        time.sleep(3)  # let the worker boot before the clock starts
        began = time.perf_counter()
        submit(parsed, log, stack.broker, NOW)
        enqueued = time.perf_counter() - began
        mail_dir = directory / "mail"
        ours = wait_drained(stack.broker, lambda: backlog(stack.broker),
                            lambda: stack.mail.accepted >= args.jobs, began)
        stack.stop_workers()
        delivered = sum(1 for _ in mail_dir.iterdir())

        floor_env = {**os.environ, **env}
        noop = subprocess.Popen([sys.executable, "-m", "dramatiq", "noop_actor", "--path", str(ROOT / "bench"),
                                 "--processes", str(args.processes), "--threads", str(args.threads),
                                 "--queues", "noop"], env=floor_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        time.sleep(3)
        broker = make_broker(env["DUNNING_REDIS_URL"])
        broker.declare_queue("noop")
        from worker.queue import broker as q

        began = time.perf_counter()
        messages = [{"n": n} for n in range(args.jobs)]
        original = q.QUEUE
        q.QUEUE, q.ACTOR = "noop", "noop"
        try:
            enqueue_many(broker, messages)
        finally:
            q.QUEUE, q.ACTOR = original, "remind"
        floor = wait_drained(broker, lambda: int(broker.client.hlen("dramatiq:noop.msgs")), lambda: True, began)
        noop.terminate()
        noop.wait(timeout=30)
        worker.wait(timeout=1) if worker.poll() is None else None
    finally:
        stack.stop()

    ours_rate, floor_rate = args.jobs / ours, args.jobs / floor
    print(f"reminders: {args.jobs} emails, {delivered} delivered to the SMTP server, "
          f"{args.processes} processes x {args.threads} threads (enqueue took {enqueued:.1f} s)")
    print(f"dunning end to end:  {ours_rate:,.0f} reminders/s ({ours:.1f} s)")
    print(f"dramatiq no-op floor: {floor_rate:,.0f} messages/s ({floor:.1f} s)")
    print(f"ratio: {ours_rate / floor_rate:.2f}   goals: >= 1,000/s {'met' if ours_rate >= 1000 else 'NOT met'}, "
          f"ratio >= 0.5 {'met' if ours_rate / floor_rate >= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
