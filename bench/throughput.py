"""Email reminders end to end, against a bare sender and dramatiq's no-op floor, in one run.

    .venv/bin/python bench/throughput.py [--jobs 10000] [--processes 2] [--threads 8]
        [--database sqlite|postgresql] [--smtp smtp-sink|aiosmtpd] [--rounds 1] [--webhooks] [--sealing]
        [--metrics]

Three figures, each over `--jobs` pre-due email reminders with the same Redis broker
settings, processes, threads and template, alternating when `--rounds` > 1:

- **dunning end to end**: `dunning worker` deciding, claiming, sealing, sending and
  recording every reminder in the contact log (SQLite, or PostgreSQL with
  `--database postgresql`: a throwaway cluster with fsync on);
- **a bare sender** (`bench/bare_sender.py`): what a user would write instead — a
  dramatiq actor that renders the same template, writes the same MIME and sends it
  over the same aiosmtplib pool, with no policy, no log, no claim;
- **dramatiq's no-op floor** (`bench/noop_actor.py`).

The SMTP server is postfix's `smtp-sink` (a C server that keeps nothing, as a real MTA
costs the sender little); `--smtp aiosmtpd` uses the demo's server, which writes every
message to disk, in this process. The jobs are recorded and queued first (intake,
timed apart); then the consumers start, and the clock runs from the moment 2% of the
messages are acknowledged (every process is up) to the last acknowledgement. CPU is
read from /proc for each group of processes over that same window. Goal: the ratio to
the bare sender >= 0.5 (issue 25), on SQLite and on PostgreSQL.

`--webhooks`: dunning again with a webhook endpoint on loopback (the dispatcher posts a
`reminder.sent` for each reminder), and how long the webhooks trail. `--sealing`:
dunning again with the vault made a pass-through (`bench/unsealed/sitecustomize.py`),
ABBA, and what sealing costs in CPU per reminder. `--metrics`: dunning again with every
metric a no-op (`bench/unmetered/sitecustomize.py`), ABBA, and what counting costs
(issue 26: within 3% of reminders/s).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.contact_log import ContactLog  # noqa: E402
from worker.jobs.book import JobBook  # noqa: E402
from worker.jobs.intake import submit  # noqa: E402
from worker.jobs.parse import parse_job  # noqa: E402
from worker.jobs.samples import many  # noqa: E402
from worker.local.postgres import Postgres  # noqa: E402
from worker.local.smtp_sink import PostfixSink  # noqa: E402
from worker.local.stack import Stack  # noqa: E402
from worker.policy import profiles  # noqa: E402
from worker.queue.broker import backlog, enqueue_many, make_broker  # noqa: E402
from worker.queue.envelope import envelope_for  # noqa: E402

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")  # a Wednesday morning: every reminder is sent
TEMPLATE = json.loads((ROOT / "worker/jobs/samples/portfolio.jsonl").read_text(encoding="utf-8").splitlines()[0])
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(roots: list[int], tree: bool = True) -> float:
    """CPU seconds used so far by `roots` (and, with `tree`, every process below them,
    the children they have waited for included), read from /proc."""
    stats: dict[int, tuple[int, float, float]] = {}  # pid: parent, own CPU, waited children's CPU
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS,
                             (int(fields[13]) + int(fields[14])) / TICKS)
    chosen, frontier = set(), [pid for pid in roots if pid in stats]
    while frontier:
        pid = frontier.pop()
        chosen.add(pid)
        if tree:
            frontier += [child for child, (parent, _, _) in stats.items() if parent == pid and child not in chosen]
    return sum(stats[pid][1] + (stats[pid][2] if tree else 0.0) for pid in chosen)


@dataclass
class Figure:
    """One timed run: messages over seconds, CPU seconds by group of processes."""

    name: str
    messages: int
    seconds: float
    cpu: dict[str, float]
    delivered: int
    intake: float  # seconds to record and queue the jobs, before the clock ran

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def cpu_line(self) -> str:
        per = {group: spent / self.messages * 1000 for group, spent in self.cpu.items()}
        parts = ", ".join(f"{group} {ms:.2f}" for group, ms in per.items())
        return f"{sum(per.values()):.2f} ms of CPU per message ({parts})"


@dataclass
class Servers:
    """Redis, the SMTP server and the database of one run, and where their CPU is read."""

    args: argparse.Namespace
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dunning-bench-")))

    def __post_init__(self) -> None:
        self.sink = PostfixSink() if self.args.smtp == "smtp-sink" else None
        self.stack = Stack(self.directory, smtp_handler=self.sink).start()
        self.pg = None
        if self.args.database == "postgresql":
            # A folder of its own: the cluster runs as the `postgres` user, who may not enter ours.
            self.pg = Postgres(Path(tempfile.mkdtemp(prefix="dunning-bench-pg-"))).start("fsync=on",
                                                                                          "max_connections=100")

    def env(self) -> dict[str, str]:
        found = self.stack.env()
        return {**found, "DUNNING_DATABASE_URL": self.pg.url} if self.pg else found

    def groups(self, consumers: int) -> dict[str, tuple[list[int], bool]]:
        """Each group's root processes, and whether the processes below count too."""
        assert self.stack.redis.process is not None
        found = {"workers": ([consumers], True), "Redis": ([self.stack.redis.process.pid], False)}
        if self.sink is not None and self.sink.pid is not None:
            found["SMTP server"] = ([self.sink.pid], False)
        else:
            found["SMTP server (aiosmtpd, this process)"] = ([os.getpid()], False)
        if self.pg is not None:
            found["PostgreSQL"] = ([int((self.pg.data / "postmaster.pid").read_text().split()[0])], True)
        return found

    def delivered(self) -> int:
        """Messages the SMTP server took (call after `stop`: smtp-sink tells as it stops)."""
        if self.sink is not None:
            return self.sink.accepted
        return sum(1 for _ in (self.directory / "mail").iterdir())

    def stop(self) -> None:
        try:
            self.stack.stop()
            if self.pg is not None:
                self.pg.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)  # 10,000 emails and a log: not left behind


def timed(pending: Callable[[], int], total: int, groups: dict[str, tuple[list[int], bool]],
          timeout: float = 1800) -> tuple[int, float, dict[str, float]]:
    """From the moment 2% of `total` are acknowledged to the last: messages, seconds, CPU by group."""
    mark = total - max(1, total // 50)
    started = time.perf_counter()
    while pending() > mark:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"nothing was done in {timeout:.0f} s")
        time.sleep(0.005)
    began, before = time.perf_counter(), {name: cpu_of(*group) for name, group in groups.items()}
    counted = pending()
    while pending() > 0:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{pending()} of {total} not done in {timeout:.0f} s")
        time.sleep(0.01)
    seconds = time.perf_counter() - began
    return counted, seconds, {name: cpu_of(*group) - before[name] for name, group in groups.items()}


def dunning(args: argparse.Namespace, extra: dict[str, str] | None = None, unsealed: bool = False,
            name: str = "dunning end to end", unmetered: bool = False) -> Figure:
    """`dunning worker` over `args.jobs` email reminders on fresh servers."""
    servers = Servers(args)
    saved, undo, extra = dict(os.environ), None, dict(extra or {})
    if unmetered:  # every process of the worker counts nothing (bench/unmetered/sitecustomize.py)
        extra |= {"DUNNING_BENCH_UNMETERED": "1",
                  "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench/unmetered"),
                                                             os.environ.get("PYTHONPATH")]))}
    if unsealed:
        sys.path.insert(0, str(ROOT / "bench/unsealed"))
        from sitecustomize import patch  # type: ignore[import-not-found]

        undo = patch()
        extra |= {"DUNNING_BENCH_UNSEALED": "1",
                  "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench/unsealed"),
                                                             os.environ.get("PYTHONPATH")]))}
    try:
        env = {**servers.env(), **extra}
        os.environ.update(env)
        log = ContactLog.open(env["DUNNING_DATABASE_URL"], servers.stack.master_key).migrate()
        servers.stack.set_clock(NOW)
        parsed = [parse_job(job, profiles(None), "bench") for job in many(TEMPLATE, args.jobs, "BENCH", "pre_due_7")]
        began = time.perf_counter()
        submit(parsed, JobBook(log), profiles(None), servers.stack.broker, NOW)
        intake = time.perf_counter() - began
        log.engine.dispose()
        worker = servers.stack.start_worker(args.processes, args.threads, extra_env=env)
        count, seconds, cpu = timed(lambda: backlog(servers.stack.broker), args.jobs, servers.groups(worker.pid))
        servers.stack.stop_workers()
    finally:
        servers.stop()
        os.environ.clear()
        os.environ.update(saved)
        if undo is not None:
            undo()
    return Figure(name, count, seconds, cpu, servers.delivered(), intake)


def floor(args: argparse.Namespace, module: str, name: str) -> Figure:
    """A dramatiq actor of `bench/` (`module`, its queue of the same name) over the same
    jobs, with the same broker settings, processes and threads."""
    servers = Servers(args)
    try:
        env = {**os.environ, **servers.env()}
        broker = make_broker(env["DUNNING_REDIS_URL"])
        queue = {"noop_actor": "noop", "bare_sender": "bare"}[module]
        broker.declare_queue(queue)
        jobs = [parse_job(job, profiles(None), "bench").job for job in many(TEMPLATE, args.jobs, "BENCH", "pre_due_7")]
        began = time.perf_counter()
        enqueue_many(broker, [envelope_for(job) for job in jobs], queue=queue, actor=queue)
        intake = time.perf_counter() - began
        consumers = subprocess.Popen([sys.executable, "-m", "dramatiq", module, "--path", str(ROOT / "bench"),
                                      "--processes", str(args.processes), "--threads", str(args.threads),
                                      "--queues", queue], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            count, seconds, cpu = timed(lambda: int(broker.client.hlen(f"dramatiq:{queue}.msgs")), args.jobs,
                                        servers.groups(consumers.pid))
        finally:
            consumers.terminate()
            consumers.wait(timeout=60)
            broker.close()
    finally:
        servers.stop()
    return Figure(name, count, seconds, cpu, servers.delivered() if module == "bare_sender" else args.jobs, intake)


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


def best(figures: list[Figure]) -> Figure:
    return max(figures, key=lambda figure: figure.rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--smtp", choices=("smtp-sink", "aiosmtpd"), default="smtp-sink")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of the three (best of each)")
    parser.add_argument("--webhooks", action="store_true",
                        help="also run dunning with a webhook endpoint on loopback and print what the outbox costs")
    parser.add_argument("--metrics", action="store_true",
                        help="also run dunning with its metrics counting nothing and print what counting costs")
    parser.add_argument("--sealing", action="store_true",
                        help="also run dunning with personal data in plain text and print what sealing costs")
    args = parser.parse_args()

    runs: dict[str, list[Figure]] = {"dunning": [], "bare": [], "noop": []}
    for number in range(args.rounds):  # A B C, then C B A: a machine slowing down costs each alike
        order = ["dunning", "bare", "noop"] if number % 2 == 0 else ["noop", "bare", "dunning"]
        for which in order:
            figure = (dunning(args) if which == "dunning" else
                      floor(args, "bare_sender", "bare sender") if which == "bare" else
                      floor(args, "noop_actor", "dramatiq no-op floor"))
            print(f"  {figure.name}: {figure.rate:,.0f}/s over {figure.seconds:.1f} s; {figure.cpu_line()}; "
                  f"delivered {figure.delivered}", flush=True)
            runs[which].append(figure)
    ours, bare, noop = best(runs["dunning"]), best(runs["bare"]), best(runs["noop"])

    if args.webhooks:
        secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        sink = Sink()
        hooked = dunning(args, {"DUNNING_WEBHOOK_URL": sink.url, "DUNNING_WEBHOOK_SECRET": secret},
                         name="with webhooks on")
        lag_from = time.perf_counter()
        while sink.taken < args.jobs and time.perf_counter() - lag_from < 600:
            time.sleep(0.05)
        print(f"  with webhooks on: {hooked.rate:,.0f} reminders/s, {hooked.rate / ours.rate:.2f} of the rate "
              f"without; {sink.taken} reminder.sent taken, the last {time.perf_counter() - lag_from:.1f} s after "
              f"the last reminder")
    if args.metrics:  # ABBA: off, on, on, off (with the first round's run, which counted)
        off = [dunning(args, unmetered=True, name="metrics off")]
        on = [ours, dunning(args, name="metrics on")]
        off.append(dunning(args, unmetered=True, name="metrics off"))
        for figure in (*off, on[1]):
            print(f"  {figure.name}: {figure.rate:,.0f}/s; {figure.cpu_line()}", flush=True)
        cpu = {mode: statistics.mean(sum(f.cpu.values()) / f.messages * 1000 for f in figures)
               for mode, figures in (("on", on), ("off", off))}
        rate = {mode: statistics.mean(f.rate for f in figures) for mode, figures in (("on", on), ("off", off))}
        print(f"  metrics: reminders/s (mean of 2) on {rate['on']:,.0f}, off {rate['off']:,.0f}: on/off "
              f"{rate['on'] / rate['off']:.3f} (goal >= 0.97); CPU per reminder, all processes: on "
              f"{cpu['on']:.2f} ms, off {cpu['off']:.2f} ms: on does {cpu['off'] / cpu['on']:.3f} of the "
              f"reminders per CPU-second")
    if args.sealing:  # ABBA: plain, sealed, sealed, plain (with the first round's sealed run)
        plain = [dunning(args, unsealed=True, name="plain")]
        sealed = [ours, dunning(args)]
        plain.append(dunning(args, unsealed=True, name="plain"))
        cpu = {mode: statistics.mean(sum(f.cpu.values()) / f.messages * 1000 for f in figures)
               for mode, figures in (("sealed", sealed), ("plain", plain))}
        print(f"  sealing: CPU per reminder, all processes (mean of 2): sealed {cpu['sealed']:.2f} ms, plain "
              f"{cpu['plain']:.2f} ms: sealed does {cpu['plain'] / cpu['sealed']:.3f} of the reminders per "
              f"CPU-second (goal >= 0.95); by the clock {best(sealed).rate / best(plain).rate:.3f}")

    print(f"{args.jobs:,} email reminders, {args.processes} processes x {args.threads} threads, {args.database}, "
          f"{args.smtp}; intake (recording and queueing, not timed): dunning {ours.intake:.1f} s "
          f"({args.jobs / ours.intake:,.0f} jobs/s), bare {bare.intake:.1f} s")
    for figure in (ours, bare, noop):
        print(f"  {figure.name}: {figure.cpu_line()}")
    if ours.delivered != args.jobs or bare.delivered != args.jobs:
        print(f"  NOTE: the SMTP server took {ours.delivered} from dunning, {bare.delivered} from the bare sender")
    print(f"dunning end to end: {ours.rate:,.0f} reminders/s")
    print(f"bare sender: {bare.rate:,.0f} messages/s")
    print(f"dramatiq no-op floor: {noop.rate:,.0f} messages/s")
    print(f"ratio to bare sender: {ours.rate / bare.rate:.2f}")


if __name__ == "__main__":
    main()
