"""The chaos suite: real faults against real processes, counted per reminder.

    .venv/bin/python bench/chaos.py [--jobs 2000] [--scenario NAME ...] [--list]

Starts its own redis-server (AOF), PostgreSQL cluster (the contact log), an SMTP
server it can stop, freeze or make answer 451/421, and `dunning worker --processes 2
--threads 8`; sends each scenario's reminders with `dunning enqueue` (a real process,
as a billing system would) while the fault happens; then drains (moving the shared
clock to whatever the agenda waits for) and counts, for every reminder: deliveries at
the SMTP server, what the contact log recorded (claims, outcome), and where the job
is in Redis if it is anywhere. One line per scenario:

    scenario  jobs  exactly-once  lost  duplicated (recorded)  unrecorded  drain  verify

Goal: 0 lost in every scenario; 0 duplicates except the in-flight emails of a
SIGKILLed worker, and those recorded in the log as a second attempt (`recorded`) —
none at all when the worker is stopped by SIGTERM, in time for its grace period;
0 unrecorded (a contact the log does not show); the log's chain intact. Exit 1
otherwise. `tests/test_chaos.py` runs a short version (a few hundred per scenario).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiosmtpd.smtp import SMTP as SMTPServer  # noqa: E402
from aiosmtpd.smtp import Envelope, Session  # noqa: E402

from worker.contact_log import ContactLog  # noqa: E402
from worker.jobs.samples import many  # noqa: E402
from worker.local.postgres import Postgres  # noqa: E402
from worker.local.smtp_sink import EmlFolder, start  # noqa: E402
from worker.local.stack import Stack  # noqa: E402
from worker.queue.agenda import Agenda  # noqa: E402
from worker.queue.broker import backlog  # noqa: E402

START = datetime.fromisoformat("2026-12-02T10:00:00+08:00")  # a Wednesday morning in Shanghai
DUNNING = str(Path(sys.executable).parent / "dunning")
SHUTDOWN_S = 15  # DUNNING_SHUTDOWN_S: what a message in hand gets at SIGTERM; the grace period allows 10 s more
TEMPLATE: dict[str, Any] = {
    "invoice": {"number": "", "amount_due": "12800.00", "currency": "CNY", "due_date": "2026-12-02",
                "issued_date": "2026-11-02", "payment_url": "https://pay.example.com/i/x"},
    "debtor": {"name": "张伟", "company": "上海某某贸易有限公司", "locale": "zh-CN", "timezone": "Asia/Shanghai",
               "country": "CN", "consent": {"email": True, "sms": False, "voice": False}},
    "profile": "default",
}


class ChaoticSmtp(EmlFolder):
    """An SMTP server's handler whose behaviour the scenario sets: answer normally,
    `451`/`421` a share of transactions, or `frozen` (hold every transaction)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.mode = "ok"
        self.every = 3  # with 451/421: one transaction in `every`
        self.count = 0
        self.kept: Counter[str] = Counter()
        self.thawed = threading.Event()
        self.thawed.set()

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        while not self.thawed.is_set():
            await asyncio.sleep(0.05)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.count += 1
        if self.mode == "451" and self.count % self.every == 0:
            return "451 4.3.0 try again later"
        if self.mode == "421" and self.count % self.every == 0:
            return "421 4.3.2 closing connection"
        reply = await super().handle_DATA(server, session, envelope)
        if self.mode == "no-reply" and self.count % self.every == 0:  # kept, but answered too late
            self.kept.update(str(to) for to in envelope.rcpt_tos)
            await asyncio.sleep(6.0)
            return reply
        if reply.startswith("250"):  # written to disk: delivered
            self.kept.update(str(to) for to in envelope.rcpt_tos)
        return reply

    def delivered(self) -> Counter[str]:
        """Deliveries per recipient (each also an .eml file in `folder`)."""
        return Counter(self.kept)


@dataclass
class Result:
    scenario: str
    jobs: int
    exactly_once: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: int = 0
    recorded: int = 0  # of the duplicated: every delivery claimed in the log
    unrecorded: int = 0  # a delivery the log does not show as a contact
    drain: float = 0.0
    verify: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and self.duplicated == self.recorded and not self.unrecorded and self.verify == "intact"

    def line(self) -> str:
        notes = self.notes + ([f"lost: {'; '.join(self.lost[:3])}"] if self.lost else [])
        return (f"{self.scenario:<24} {self.jobs:>5}  {self.exactly_once:>5}  {len(self.lost):>4}  "
                f"{self.duplicated:>3} ({self.recorded})  {self.unrecorded:>3}  {self.drain:>6.1f} s  {self.verify}"
                + (f"  [{'; '.join(notes)}]" if notes else ""))


HEADER = f"{'scenario':<24} {'jobs':>5}  {'once':>5}  lost  dup (recorded)  unrec   drain  verify"


class World:
    """Everything the scenarios act on: the servers, the log, a running worker."""

    def __init__(self, directory: Path, processes: int = 2, threads: int = 8, migrated: bool = True) -> None:
        """`migrated=False`: the log's database left empty, for an older release to make
        (`tests/test_upgrades.py`)."""
        self.directory = directory
        self.pg = Postgres(Path(tempfile.mkdtemp(prefix="dunning-chaos-pg-"))).start()
        self.mail = ChaoticSmtp(directory / "mail")
        self.stack = Stack(directory, smtp_handler=self.mail).start()
        self.health = directory / "worker.health"
        self.env = {**os.environ, **self.stack.env(), "DUNNING_DATABASE_URL": self.pg.url,
                    "DUNNING_EMAIL_PER_SECOND": "150",  # every reminder waits for a send slot in the agenda
                    "DUNNING_BROKER_HEARTBEAT_MS": "3000", "DUNNING_BROKER_MAINTENANCE_CHANCE": "1000000",
                    "DUNNING_CLAIM_LEASE_S": "10", "DUNNING_STRANDED_AFTER_S": "120",
                    "DUNNING_SMTP_TIMEOUT_S": "3", "DUNNING_SHUTDOWN_S": str(SHUTDOWN_S),
                    "DUNNING_HEALTH_FILE": str(self.health)}
        self.log = ContactLog.open(self.pg.url, self.stack.master_key)
        if migrated:
            self.log.migrate()
        self.processes, self.threads = processes, threads
        self.worker: subprocess.Popen[bytes] | None = None
        self.stack.set_clock(START)

    def start_worker(self) -> None:
        output = open(self.directory / "worker.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.worker = subprocess.Popen([DUNNING, "worker", "--processes", str(self.processes), "--threads",
                                        str(self.threads)], env=self.env, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()

    def worker_children(self) -> list[int]:
        """Every process below `dunning worker` (dramatiq's main process and its workers)."""
        assert self.worker is not None
        parents: dict[int, int] = {}
        for path in glob.glob("/proc/[0-9]*/stat"):
            try:
                parents[int(path.split("/")[2])] = int(Path(path).read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, IndexError, ValueError):
                continue
        found, frontier = [], [self.worker.pid]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            found += children
            frontier += children
        return found

    def enqueue(self, jobs: list[dict[str, Any]], escaped: bool = False) -> subprocess.CompletedProcess[str]:
        """`dunning enqueue` as a billing system runs it; `escaped`: non-ASCII as JSON's
        \\u escapes (the only way to write a lone surrogate)."""
        source = self.directory / f"jobs-{uuid.uuid4().hex[:6]}.jsonl"
        source.write_text("".join(json.dumps(job, ensure_ascii=escaped) + "\n" for job in jobs), encoding="utf-8")
        return subprocess.run([DUNNING, "enqueue", str(source)], env=self.env, capture_output=True, text=True,
                              timeout=300)

    def drain(self, timeout: float) -> float:
        return drain(self.stack.client, self.stack.broker, self.stack.clock, timeout)

    def count(self, scenario: str, jobs: list[dict[str, Any]], drain: float) -> Result:
        return count(scenario, jobs, drain, self.mail.delivered(), self.log, self.stack.client)

    def close(self) -> None:
        self.stop_worker()
        self.stack.stop()
        self.log.engine.dispose()
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg.ctl("stop", "immediate")
        shutil.rmtree(self.pg.base, ignore_errors=True)



def drain(client: Any, broker: Any, clock: Any, timeout: float) -> float:
    """Until nothing is queued, held or due: the shared clock is moved to the agenda's
    next entry whenever only later work remains (a retry in 30 minutes). Seconds it
    took, or -1 past `timeout`."""
    started = time.monotonic()
    quiet = 0.0
    agenda = Agenda(client)
    while time.monotonic() - started < timeout:
        try:
            queued = backlog(broker) + len(client.keys("dramatiq:__acks__.*"))
            due_soon = agenda.due_count(clock.now() + timedelta(seconds=30))
            later = agenda.next_due() if queued == 0 and due_soon == 0 else None
        except Exception:  # Redis restarting
            time.sleep(0.2)
            continue
        if queued or due_soon:
            quiet = 0.0
        elif later is not None:
            clock.set(later + timedelta(seconds=1))
            quiet = 0.0
        else:
            quiet = quiet or time.monotonic()
            if time.monotonic() - quiet > 1.5:
                return time.monotonic() - started
        time.sleep(0.2)
    return -1.0


def count(scenario: str, jobs: list[dict[str, Any]], drained: float, delivered: Counter[str], log: ContactLog,
          client: Any) -> Result:
    """Every reminder counted: delivered once, lost (and where it is), or delivered more
    than once (and whether the log recorded each delivery as a claim); the log verified."""
    result = Result(scenario, len(jobs), drain=drained)
    claims: Counter[str] = Counter()
    status: dict[str, str] = {}
    for row in log.history():
        if row["kind"] == "delivery" and row["job_id"]:
            if row["status"] == "claimed":
                claims[row["job_id"]] += 1
            status[row["job_id"]] = row["status"]
    for job in jobs:
        got, claimed = delivered[job["debtor"]["email"]], claims[job["job_id"]]
        if got == 0:
            result.lost.append(f"{job['job_id']}: {status.get(job['job_id'], 'no delivery')}, "
                               f"{where(client, job['job_id'])}")
        elif got == 1:
            result.exactly_once += 1
        else:
            result.duplicated += 1
            result.recorded += claimed >= got
        result.unrecorded += max(0, got - claimed)
    verdict = log.verify()
    result.verify = "intact" if verdict.intact else f"{len(verdict.problems)} problem(s)"
    return result


def where(client: Any, job_id: str) -> str:
    if client.hexists("dunning:agenda:payload", job_id):
        return "in the agenda"
    for key in ("dramatiq:reminders.msgs", "dramatiq:reminders.DQ.msgs", "dramatiq:reminders.XQ.msgs"):
        for raw in client.hvals(key):
            if job_id.encode() in raw:
                return f"in {key}"
    return "nowhere in Redis"


def send_while(world: World, jobs: list[dict[str, Any]], result: Result, fault: Callable[[], None],
               share: float = 0.25) -> None:
    """Enqueue the jobs, and bring on `fault` once `share` of them have reached the SMTP
    server (the fault must find reminders in flight); notes how many had."""
    done = world.enqueue(jobs)
    if done.returncode != 0:
        raise RuntimeError(f"enqueue failed: {done.stderr[-500:]}")
    addresses = {job["debtor"]["email"] for job in jobs}
    deadline = time.monotonic() + 60
    while True:
        sent = sum(n for to, n in world.mail.delivered().items() if to in addresses)
        if sent >= len(jobs) * share or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    result.notes.append(f"fault at {sent}/{len(jobs)} sent")
    fault()


def restart_redis(world: World, how: signal.Signals, down: float = 2.0) -> None:
    process = world.stack.redis.process
    assert process is not None
    process.send_signal(how)
    process.wait(timeout=30)
    time.sleep(down)
    world.stack.redis.start()


def enqueue_until_accepted(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    """What a billing system does with exit 3: send the same input again."""
    for attempt in range(30):
        done = world.enqueue(jobs)
        if done.returncode == 0:
            if attempt and " 0 duplicate(s)" not in done.stdout and f"{len(jobs)} queued" not in done.stdout:
                result.notes.append(f"retry said: {done.stdout.strip()}")
            return
        if done.returncode != 3:
            raise RuntimeError(f"enqueue exit {done.returncode}: {done.stderr[-400:]}")
        if "Traceback" in done.stderr:
            result.notes.append("a traceback on exit 3")
        time.sleep(1)
    raise RuntimeError("intake never accepted the jobs")


def scenario_baseline(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    send_while(world, jobs, result, lambda: None)


def scenario_enqueue_redis_down(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    process = world.stack.redis.process
    assert process is not None
    process.terminate()
    process.wait(timeout=30)
    down = world.enqueue(jobs)
    if down.returncode != 3 or "not accepted" not in down.stdout:
        result.notes.append(f"with Redis down: exit {down.returncode}, {down.stdout.strip()}")
    world.stack.redis.start()
    enqueue_until_accepted(world, jobs, result)


def scenario_enqueue_redis_hung(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    process = world.stack.redis.process
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    thaw = threading.Timer(17.0, lambda: process.send_signal(signal.SIGCONT))  # past the clients' 15 s timeout
    thaw.start()
    hung = world.enqueue(jobs)
    if hung.returncode != 3:
        result.notes.append(f"with Redis hung: exit {hung.returncode}")
    thaw.join()
    enqueue_until_accepted(world, jobs, result)


def scenario_bad_bytes(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    """5% of the batch carries a NUL or a lone surrogate: those are rejected, alone."""
    bad = {i for i in range(0, len(jobs), 20)}
    mixed = json.loads(json.dumps(jobs))
    for i in bad:
        mixed[i]["debtor"]["name"] = "张\u0000伟" if i % 40 == 0 else "张\ud800伟"
    done = world.enqueue(mixed, escaped=True)
    if done.returncode != 1 or f"{len(bad)} rejected" not in done.stdout:
        result.notes.append(f"bad bytes: exit {done.returncode}, {done.stdout.strip()}")
    for i in sorted(bad, reverse=True):
        del jobs[i]  # the rejected are not expected at the SMTP server
    result.jobs = len(jobs)


def scenario_redis_sigterm(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    send_while(world, jobs, result, lambda: restart_redis(world, signal.SIGTERM))


def scenario_redis_sigkill(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    send_while(world, jobs, result, lambda: restart_redis(world, signal.SIGKILL))


def scenario_postgres_fast(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    send_while(world, jobs, result, lambda: world.pg.ctl("restart", "fast"))


def scenario_postgres_immediate(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    send_while(world, jobs, result, lambda: world.pg.ctl("restart", "immediate"))


def _smtp_down(world: World, seconds: float) -> None:
    assert world.stack.smtp is not None
    port = world.stack.smtp.port
    world.stack.smtp.stop()
    time.sleep(seconds)
    world.stack.smtp = start(world.mail, port=port)


def scenario_smtp_down(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    send_while(world, jobs, result, lambda: _smtp_down(world, 5.0))


def _smtp_answering(code: str, every: int = 3) -> Callable[[World, list[dict[str, Any]], Result], None]:
    """The SMTP server answers `code` to one transaction in `every` while the jobs go out
    (`no-reply`: it keeps the message and answers after the client's timeout)."""
    def scenario(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
        world.mail.mode, world.mail.every = code, every
        try:
            send_while(world, jobs, result, lambda: None)
            world.drain(120)
        finally:
            world.mail.mode, world.mail.every = "ok", 3
    return scenario


def scenario_smtp_frozen(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    def freeze() -> None:
        world.mail.thawed.clear()
        time.sleep(8.0)
        world.mail.thawed.set()
    send_while(world, jobs, result, freeze)


def scenario_kill_children(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    def kill() -> None:
        for pid in world.worker_children():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                    if b"dramatiq" in cmd.read():
                        os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
        # dramatiq's main process exits when a worker process dies; `dunning worker` follows (exit 1)
        assert world.worker is not None
        world.worker.wait(timeout=60)
        world.start_worker()
    send_while(world, jobs, result, kill)


def scenario_kill_parent(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    def kill() -> None:
        assert world.worker is not None
        children = world.worker_children()
        os.kill(world.worker.pid, signal.SIGKILL)
        world.worker.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
            time.sleep(0.2)
        left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
        if left:
            result.notes.append(f"{len(left)} orphaned worker process(es)")
        world.start_worker()
    send_while(world, jobs, result, kill)


def scenario_sigterm_worker(world: World, jobs: list[dict[str, Any]], result: Result) -> None:
    """A rolling restart's stop: SIGTERM to `dunning worker` under load. Within the grace
    period it must have finished or put back every message it held (no ack set left with
    one in it); the next worker sends the rest, none twice — not even a recorded twice."""
    def stop() -> None:
        assert world.worker is not None
        began = time.monotonic()
        world.worker.send_signal(signal.SIGTERM)
        try:
            code = world.worker.wait(timeout=SHUTDOWN_S + 60)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - began
        held = sum(world.stack.client.scard(key) for key in world.stack.client.keys("dramatiq:__acks__.*"))
        result.notes.append(f"stopped in {took:.1f} s (exit {code}), {held} held")
        if code is None or took > SHUTDOWN_S + 10:
            result.notes.append(f"error: the stop outlasted the grace period ({SHUTDOWN_S + 10} s)")
        if held:
            result.notes.append(f"error: {held} message(s) stranded in ack sets")
        world.stop_worker()
        world.start_worker()
    send_while(world, jobs, result, stop)


SCENARIOS: dict[str, Callable[[World, list[dict[str, Any]], Result], None]] = {
    "baseline": scenario_baseline,
    "enqueue-redis-down": scenario_enqueue_redis_down,
    "enqueue-redis-hung": scenario_enqueue_redis_hung,
    "bad-bytes-5pct": scenario_bad_bytes,
    "redis-sigterm": scenario_redis_sigterm,
    "redis-sigkill": scenario_redis_sigkill,
    "postgres-fast": scenario_postgres_fast,
    "postgres-immediate": scenario_postgres_immediate,
    "smtp-down": scenario_smtp_down,
    "smtp-451": _smtp_answering("451"),
    "smtp-421": _smtp_answering("421"),
    "smtp-frozen": scenario_smtp_frozen,
    "smtp-no-reply": _smtp_answering("no-reply", every=25),
    "kill-worker-children": scenario_kill_children,
    "kill-worker-parent": scenario_kill_parent,
    "sigterm-worker": scenario_sigterm_worker,
}


def run(names: list[str], jobs_per: int, out: Callable[[str], None] = print, keep: bool = False) -> list[Result]:
    directory = Path(tempfile.mkdtemp(prefix="dunning-chaos-"))
    world = World(directory)
    results = []
    try:
        world.start_worker()
        out(HEADER)
        for name in names:
            jobs = many(TEMPLATE, jobs_per, "C" + uuid.uuid4().hex[:6])
            result = Result(name, len(jobs))
            started = time.monotonic()
            try:
                SCENARIOS[name](world, jobs, result)
            except Exception as error:  # a scenario that could not run is a failed one, said so
                result.notes.append(f"scenario error: {type(error).__name__}: {error}")
                result.verify = "not run"
            drained = world.drain(timeout=300)
            counted = world.count(name, jobs, drained if drained < 0 else time.monotonic() - started)
            counted.notes = result.notes + ([] if drained >= 0 else ["did not drain in 300 s"])
            counted.jobs = result.jobs
            if result.verify == "not run":
                counted.verify = "not run"
            results.append(counted)
            out(counted.line())
    finally:
        world.close()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            out(f"kept: {directory}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="reminders per scenario")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="run only these")
    parser.add_argument("--keep", action="store_true", help="keep the servers' files and logs")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    args = parser.parse_args()
    if args.list:
        print("\n".join(SCENARIOS))
        return
    results = run(args.scenario or list(SCENARIOS), args.jobs, keep=args.keep)
    failed = [r.scenario for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
