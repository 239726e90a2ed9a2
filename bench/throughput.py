"""Email reminders end to end, against dramatiq's no-op floor measured in the same run.

    .venv/bin/python bench/throughput.py [--jobs 20000] [--processes 2] [--threads 8] [--webhooks]

Starts redis-server, an aiosmtpd SMTP server on loopback (it writes every message to
disk, as the demo's does) and a SQLite contact log; runs `dunning worker` with N
processes × M threads over `--jobs` pre-due email reminders, from the first enqueue
to the last acknowledgement; then runs dramatiq with the same broker, middleware,
processes and threads over the same number of no-op messages. Prints both rates and
their ratio. Goal on the 2-core machine: ≥ 1,000 reminders/s and a ratio ≥ 0.5.
With `--webhooks`, runs dunning with a webhook endpoint on loopback too (the worker's
dispatcher posts a `reminder.sent` for every reminder, and logs each attempt),
alternating with runs without, best of two each, and prints the rate with webhooks on
against the rate without, and how long the webhooks trail the reminders. With
`--sealing`, alternates runs with personal data sealed (as always) and runs with the
vault made a pass-through (`bench/unsealed/sitecustomize.py`, in this process and the
worker's), three each in ABBA order, and prints what sealing costs: by the clock (best
runs) and in CPU seconds per reminder, summed over every process (less noisy here).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.contact_log import ContactLog  # noqa: E402
from worker.jobs.book import JobBook  # noqa: E402
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


class Sink:
    """A billing system's webhook endpoint that takes everything (204), counting."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.taken = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint would

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.taken += 1
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


CPU_SPENT: dict[str, list[float]] = {"sealed": [], "plain": []}  # CPU seconds of every process, per run


def cpu_seconds() -> float:
    """CPU used by this process and every child it has waited for (the worker, its dramatiq
    processes, redis-server): what a run costs, whatever else the machine is doing."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def ours(args: argparse.Namespace, extra: dict[str, str], sink: Sink | None = None,
         unsealed: bool = False) -> tuple[float, int, float]:
    """dunning over `args.jobs` email reminders on a fresh stack: seconds, delivered, enqueue seconds."""
    cpu_before = cpu_seconds()
    directory = Path(tempfile.mkdtemp(prefix="dunning-bench-"))
    stack = Stack(directory).start()
    saved = dict(os.environ)
    undo = None
    if unsealed:
        sys.path.insert(0, str(ROOT / "bench/unsealed"))
        from sitecustomize import patch  # type: ignore[import-not-found]

        undo = patch()
        extra = {**extra, "DUNNING_BENCH_UNSEALED": "1",
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench/unsealed"),
                                                            os.environ.get("PYTHONPATH")]))}
    try:
        env = {**stack.env(), **extra}
        os.environ.update(env)
        log = ContactLog.open(env["DUNNING_DATABASE_URL"], stack.master_key).migrate()
        stack.set_clock(NOW)
        parsed = [parse_job(job, profiles(None), "bench") for job in many(TEMPLATE, args.jobs, "BENCH", "pre_due_7")]
        worker = stack.start_worker(args.processes, args.threads, extra_env=extra)
        time.sleep(3)  # let the worker boot before the clock starts
        began = time.perf_counter()
        submit(parsed, JobBook(log), profiles(None), stack.broker, NOW)
        enqueued = time.perf_counter() - began
        seconds = wait_drained(stack.broker, lambda: backlog(stack.broker),
                               lambda: stack.mail.accepted >= args.jobs, began)
        if sink is not None:
            lag_from = time.perf_counter()
            while sink.taken < args.jobs and time.perf_counter() - lag_from < 600:
                time.sleep(0.05)
            print(f"webhooks: {sink.taken} reminder.sent taken by the endpoint, the last "
                  f"{time.perf_counter() - lag_from:.1f} s after the last reminder")
        print(f"  run: {'plain' if unsealed else 'sealed'}{' + webhooks' if sink else ''} {seconds:.1f} s "
              f"(enqueue {enqueued:.1f} s)", flush=True)
        stack.stop_workers()
        worker.wait(timeout=1) if worker.poll() is None else None
        delivered = sum(1 for _ in (directory / "mail").iterdir())
    finally:
        stack.stop()
        shutil.rmtree(directory, ignore_errors=True)  # 10,000 emails and a log: not left behind
        if sink is None:
            spent = cpu_seconds() - cpu_before
            CPU_SPENT["plain" if unsealed else "sealed"].append(spent)
            print(f"    CPU: {spent:.1f} s, {spent / args.jobs * 1000:.2f} ms per reminder", flush=True)
        os.environ.clear()
        os.environ.update(saved)
        if undo is not None:
            undo()
    return seconds, delivered, enqueued


def floor(args: argparse.Namespace) -> float:
    """dramatiq's no-op actor, same broker, middleware, processes and threads: seconds."""
    directory = Path(tempfile.mkdtemp(prefix="dunning-bench-floor-"))
    stack = Stack(directory).start()
    try:
        env = {**os.environ, **stack.env()}
        noop = subprocess.Popen([sys.executable, "-m", "dramatiq", "noop_actor", "--path", str(ROOT / "bench"),
                                 "--processes", str(args.processes), "--threads", str(args.threads),
                                 "--queues", "noop"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        time.sleep(3)
        broker = make_broker(stack.env()["DUNNING_REDIS_URL"])
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
        seconds = wait_drained(broker, lambda: int(broker.client.hlen("dramatiq:noop.msgs")), lambda: True, began)
        noop.terminate()
        noop.wait(timeout=30)
    finally:
        stack.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--webhooks", action="store_true",
                        help="run again with a webhook endpoint on loopback and print what the outbox costs")
    parser.add_argument("--sealing", action="store_true",
                        help="run again with personal data in plain text and print what sealing costs")
    args = parser.parse_args()

    plain = ours(args, {}, unsealed=True)[0] if args.sealing else None  # ABBA: plain, sealed, sealed, plain...
    mine, delivered, enqueued = ours(args, {})
    hooked = None
    if args.webhooks:  # without and with, alternating, best of 2 each: this machine is shared and noisy
        secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        sink = Sink()
        hooked = ours(args, {"DUNNING_WEBHOOK_URL": sink.url, "DUNNING_WEBHOOK_SECRET": secret}, sink)[0]
        mine = min(mine, ours(args, {})[0])
        sink = Sink()
        hooked = min(hooked, ours(args, {"DUNNING_WEBHOOK_URL": sink.url, "DUNNING_WEBHOOK_SECRET": secret}, sink)[0])
    if plain is not None:  # ABBA order (p s s p p s): a machine slowing down over the runs costs both alike
        mine = min(mine, ours(args, {})[0])
        plain = min(plain, ours(args, {}, unsealed=True)[0])
        plain = min(plain, ours(args, {}, unsealed=True)[0])
        mine = min(mine, ours(args, {})[0])
    base = floor(args)

    ours_rate, floor_rate = args.jobs / mine, args.jobs / base
    print(f"reminders: {args.jobs} emails, {delivered} delivered to the SMTP server, "
          f"{args.processes} processes x {args.threads} threads (enqueue took {enqueued:.1f} s)")
    print(f"dunning end to end:  {ours_rate:,.0f} reminders/s ({mine:.1f} s)")
    if hooked is not None:
        print(f"  with webhooks on:  {args.jobs / hooked:,.0f} reminders/s ({hooked:.1f} s), "
              f"{(args.jobs / hooked) / ours_rate:.2f} of the rate without")
    if plain is not None:
        print(f"  personal data in plain text: {args.jobs / plain:,.0f} reminders/s ({plain:.1f} s); sealed is "
              f"{ours_rate / (args.jobs / plain):.3f} of it by the clock (best runs)")
        sealed_cpu, plain_cpu = (statistics.mean(CPU_SPENT[mode]) for mode in ("sealed", "plain"))
        ratio = plain_cpu / sealed_cpu
        print(f"  CPU per reminder, all processes (mean of 3, ABBA): sealed {sealed_cpu / args.jobs * 1000:.2f} ms, "
              f"plain "
              f"{plain_cpu / args.jobs * 1000:.2f} ms: sealed does {ratio:.3f} of the reminders per CPU-second "
              f"(goal >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})")
    print(f"dramatiq no-op floor: {floor_rate:,.0f} messages/s ({base:.1f} s)")
    print(f"ratio: {ours_rate / floor_rate:.2f}   goals: >= 1,000/s {'met' if ours_rate >= 1000 else 'NOT met'}, "
          f"ratio >= 0.5 {'met' if ours_rate / floor_rate >= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
