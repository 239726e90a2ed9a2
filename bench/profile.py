"""Where a worker's CPU goes, per reminder: a sampling profile of `dunning worker` under load.

    .venv/bin/python bench/profile.py [--jobs 12000] [--seconds 20] [--sealing] [--database postgresql]

Starts the same servers as bench/throughput.py (Redis, postfix's smtp-sink, the log),
queues `--jobs` email reminders, starts `dunning worker` (2 processes x 8 threads) and,
once it is busy, samples both worker processes with py-spy (`--gil`: only the thread
holding the interpreter, i.e. the Python work; 200 Hz) for `--seconds`. Each sample is
put in one step by its stack, the innermost frame that names one winning (a seal under
a claim counts as sealing); a step's share of the samples times the workers' CPU per
reminder over the same window (from /proc) is its cost in ms. What the interpreter
does not hold (SQLite's C code, the kernel's socket work) is in the CPU figure but not
split. `--sealing` profiles a second run with the vault a pass-through
(`bench/unsealed`) and prints both.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import throughput  # noqa: E402

from worker.contact_log import ContactLog  # noqa: E402
from worker.jobs.book import JobBook  # noqa: E402
from worker.queue.broker import backlog  # noqa: E402

# (step, what in a frame names it), tried from the innermost frame outwards.
STEPS = [
    ("chain digest", ("contact_log/chain.py",)),
    ("sealing", ("db/vault.py", "db/sealing.py", "cryptography/")),
    ("Redis", ("redis/",)),
    ("SMTP exchange", ("aiosmtplib/",)),
    ("MIME", ("EmailChannel.build", "email/")),
    ("decide", ("schedules/",)),
    ("render", ("jinja2/", "messages/render.py", "messages/context.py", "babel/", "markupsafe/")),
    ("parse job", ("parse_job", "pydantic/")),
    ("facts read", ("FactReads.known", "Pipeline.standing")),
    ("claim", ("Store.claim",)),
    ("outcome write", ("Pipeline.outcome_in", "Store.record")),
    ("group commit (lock, heads, insert, commit)", ("LogWriter", "contact_log/appending.py")),
    ("dramatiq", ("dramatiq/",)),
    ("thread hand-offs, event loop", ("asyncio/", "concurrent/", "threading.py", "selectors.py", "queue.py")),
]


def step_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, marks in STEPS:
            if any(mark in frame for mark in marks):
                return name
    return "other"


def profile(args: argparse.Namespace, unsealed: bool) -> tuple[dict[str, float], float, int]:
    """One run: ms of worker CPU per reminder by step, the workers' rate, samples."""
    servers = throughput.Servers(args)
    extra = {}
    if unsealed:
        extra = {"DUNNING_BENCH_UNSEALED": "1", "PYTHONPATH": str(ROOT / "bench/unsealed")}
    saved = dict(os.environ)
    out = Path(tempfile.mkdtemp(prefix="dunning-profile-"))
    try:
        env = {**servers.env(), **extra}
        os.environ.update(env)
        log = ContactLog.open(env["DUNNING_DATABASE_URL"], servers.stack.master_key).migrate()
        servers.stack.set_clock(throughput.NOW)
        parsed = [throughput.parse_job(job, throughput.profiles(None), "bench")
                  for job in throughput.many(throughput.TEMPLATE, args.jobs, "BENCH", "pre_due_7")]
        throughput.submit(parsed, JobBook(log), throughput.profiles(None), servers.stack.broker, throughput.NOW)
        log.engine.dispose()
        worker = servers.stack.start_worker(2, 8, extra_env=env)
        while backlog(servers.stack.broker) > args.jobs * 0.95:  # busy: past the start
            time.sleep(0.05)
        children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
        pids = [pid for parent in children
                for pid in subprocess.run(["pgrep", "-P", parent], capture_output=True, text=True).stdout.split()]
        before, left = throughput.cpu_of([int(p) for p in pids], tree=False), backlog(servers.stack.broker)
        spies = [subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", pid, "--rate", "200",
                                   "--duration", str(args.seconds), "--format", "raw", "--gil", "--nonblocking",
                                   "-o", str(out / f"{pid}.txt")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for pid in pids]
        began = time.perf_counter()
        for spy in spies:
            spy.wait()
        seconds = time.perf_counter() - began
        done = left - backlog(servers.stack.broker)
        spent = throughput.cpu_of([int(p) for p in pids], tree=False) - before
        servers.stack.stop_workers()
        samples: Counter[str] = Counter()
        for found in out.glob("*.txt"):
            for line in found.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if count.isdigit():  # a stack and its count; py-spy writes nothing else there when it is well
                    samples[step_of(stack)] += int(count)
    finally:
        servers.stop()
        os.environ.clear()
        os.environ.update(saved)
    total = sum(samples.values()) or 1
    per = spent / max(done, 1) * 1000
    return {name: count / total * per for name, count in samples.items()}, done / seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--sealing", action="store_true", help="profile a run without sealing too")
    args = parser.parse_args()
    args.smtp = "smtp-sink"
    runs = {"sealed": profile(args, unsealed=False)}
    if args.sealing:
        runs["plain"] = profile(args, unsealed=True)
    names = sorted({name for per, _, _ in runs.values() for name in per}, key=lambda n: -runs["sealed"][0].get(n, 0))
    print(f"worker CPU per reminder by step, ms ({args.database}; py-spy --gil, 2 processes x 8 threads, "
          f"{args.seconds} s under load)")
    print(f"{'step':44}" + "".join(f"{mode:>10}" for mode in runs))
    for name in names:
        print(f"{name:44}" + "".join(f"{per.get(name, 0.0):10.2f}" for per, _, _ in runs.values()))
    print(f"{'all (the workers CPU per reminder)':44}"
          + "".join(f"{sum(per.values()):10.2f}" for per, _, _ in runs.values()))
    print(f"{'reminders/s while sampled':44}" + "".join(f"{rate:10.0f}" for _, rate, _ in runs.values()))
    print(f"{'samples':44}" + "".join(f"{count:10d}" for _, _, count in runs.values()))


if __name__ == "__main__":
    main()
