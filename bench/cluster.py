"""Several hosts for real: worker hosts and an API host as Linux network namespaces on
this machine (`worker/local/hosts.py`), PostgreSQL and Redis on the machine itself.

    .venv/bin/python bench/cluster.py [--jobs 5000] [--hosts 1,2,3] [--per-host 2000] [--cut 20]

Needs root, iproute2 and nftables (`make system`). Starts PostgreSQL (the contact log,
64 chains, `idle_in_transaction_session_timeout` 10 s as production should set it),
Redis and an SMTP server listening on the bridge, `dunning serve` on the host `api`,
and `dunning worker --processes 1 --threads 8` on hosts `w1`, `w2`, `w3`; every worker
signs checkpoints every 2 s. Reminders go in as a billing system sends them: `POST
/v1/jobs` to the API host, 500 a request.

1. Throughput per number of worker hosts (`--hosts`): `--per-host` email reminders
   per run, from the first request to the last delivery, with the machine's CPU use.
   On one 2-core machine the hosts share the same two cores, so the figures say how
   the cluster behaves, not what more machines would add: that the log has no serial
   section left is `bench/log.py`'s figure.
2. Faults: `--jobs` reminders over three worker hosts; once a quarter are delivered,
   w2's link is cut for `--cut` seconds (nftables drops every packet: a pulled
   cable), and once 40% are, every process on w3 is SIGKILLed (a lost machine).
   Then everything is drained and every reminder counted: delivered once, lost, or
   delivered twice — allowed only for an email in flight on the killed host, and only
   with the log recording both sends (a second claim). Every chain must verify, and
   the log must extend the last signed checkpoint.

Exit 1 if anything was lost, sent twice unrecorded, or does not verify.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from aiosmtpd.smtp import SMTP as SMTPServer  # noqa: E402
from aiosmtpd.smtp import Envelope, Session  # noqa: E402
from chaos import START, TEMPLATE, count, drain  # noqa: E402

from worker.clock import RedisClock  # noqa: E402
from worker.contact_log import ContactLog  # noqa: E402
from worker.contact_log.checkpoints import Checkpoints  # noqa: E402
from worker.contact_log.note import Verifier, keygen  # noqa: E402
from worker.jobs.samples import many  # noqa: E402
from worker.local.hosts import GATEWAY, Hosts, available  # noqa: E402
from worker.local.ports import answering  # noqa: E402
from worker.local.postgres import Postgres  # noqa: E402
from worker.local.redis_server import RedisServer  # noqa: E402
from worker.local.smtp_sink import start as start_smtp  # noqa: E402
from worker.queue.broker import make_broker, redis_client  # noqa: E402

DUNNING = str(Path(sys.executable).parent / "dunning")


class Counting:
    """An SMTP server's handler that accepts every message and counts it per recipient."""

    def __init__(self) -> None:
        self.kept: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.kept.update(str(to) for to in envelope.rcpt_tos)
        return "250 OK"

    def delivered(self) -> Counter[str]:
        with self.lock:
            return Counter(self.kept)


class Cluster:
    """The data host (this machine), the API host and the worker hosts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hosts = Hosts()
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        directory = self.directory
        self.pg = Postgres(Path(tempfile.mkdtemp(prefix="dunning-cluster-pg-")), host=GATEWAY).start(
            "max_connections=200", "idle_in_transaction_session_timeout=10s")
        self.redis = RedisServer(directory / "redis", host=GATEWAY).start()
        self.mail = Counting()
        self.smtp = start_smtp(self.mail, hostname=GATEWAY)
        master = os.urandom(32)
        private, public = keygen("bench.dunning.local/cluster")
        self.verifier = Verifier.parse(public)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory),
            "DUNNING_DATABASE_URL": self.pg.url, "DUNNING_REDIS_URL": self.redis.url, "DUNNING_CLOCK": "redis",
            "DUNNING_SMTP_URL": f"smtp://{GATEWAY}:{self.smtp.port}", "DUNNING_SMTP_TIMEOUT_S": "3",
            "DUNNING_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
            "DUNNING_MASTER_KEY": base64.b64encode(master).decode(),
            "DUNNING_CHECKPOINT_KEY": private, "DUNNING_CHECKPOINT_EVERY_S": "2",
            "DUNNING_CHECKPOINT_DIR": str(directory / "checkpoints"),
            "DUNNING_BROKER_HEARTBEAT_MS": "3000", "DUNNING_BROKER_MAINTENANCE_CHANCE": "1000000",
            "DUNNING_CLAIM_LEASE_S": "10", "DUNNING_STRANDED_AFTER_S": "120",
            "DUNNING_PUBLIC_URL": "http://127.0.0.1:8000",
        }
        self.log = ContactLog.open(self.pg.url, master).migrate(chains=64)
        self.client = redis_client(self.redis.url)
        self.broker = make_broker(self.redis.url)
        self.clock = RedisClock(self.client)
        self.clock.set(START)
        made = subprocess.run([DUNNING, "keys", "create", "billing", "--scopes", "jobs:write"], env=self.env,
                              capture_output=True, text=True, check=True)
        self.key = next(word for word in made.stdout.split() if word.startswith("dk_"))
        api = self.hosts.add("api")
        self.api_url = f"http://{api}:8000"
        self.hosts.popen("api", [DUNNING, "serve", "--host", api, "--port", "8000"], self.env, directory / "api.log")
        self.workers: list[str] = []
        self._wait_for_api()

    def _wait_for_api(self) -> None:
        if not answering(f"{self.api_url}/v1/openapi.json", 60):
            raise RuntimeError(f"dunning serve did not answer; see {self.directory / 'api.log'}")

    def add_worker(self) -> str:
        name = f"w{len(self.workers) + 1}"
        self.hosts.add(name)
        self.hosts.popen(name, [DUNNING, "worker", "--processes", "1", "--threads", "8"],
                         {**self.env, "DUNNING_HEALTH_FILE": str(self.directory / f"{name}.health")},
                         self.directory / f"{name}.log")
        self.workers.append(name)
        return name

    def submit(self, jobs: list[dict[str, Any]]) -> None:
        """`POST /v1/jobs`, 500 a request, each request tried again until accepted."""
        for start in range(0, len(jobs), 500):
            body = json.dumps({"jobs": jobs[start:start + 500]}, ensure_ascii=False).encode()
            for _ in range(60):
                request = urllib.request.Request(f"{self.api_url}/v1/jobs", data=body, method="POST", headers={
                    "Authorization": f"Bearer {self.key}", "Content-Type": "application/json",
                    "Idempotency-Key": f"batch-{jobs[start]['job_id']}"})
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        if answer.status == 202:
                            break
                except OSError:
                    time.sleep(1)
            else:
                raise RuntimeError("the API never accepted a batch")

    def wait_delivered(self, jobs: list[dict[str, Any]], share: float, timeout: float) -> int:
        wanted = {job["debtor"]["email"] for job in jobs}
        deadline = time.monotonic() + timeout
        while True:
            done = sum(1 for to in self.mail.delivered() if to in wanted)
            if done >= share * len(jobs) or time.monotonic() > deadline:
                return done
            time.sleep(0.05)

    def close(self) -> None:
        """Everything stopped and removed, however far `__init__` got."""
        self.hosts.remove()
        for part in ("smtp", "redis", "pg"):
            if hasattr(self, part):
                getattr(self, part).stop()
        if hasattr(self, "log"):
            self.log.engine.dispose()


def busy() -> tuple[float, float]:
    """(busy, total) CPU time of the machine so far, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def throughput(cluster: Cluster, counts: list[int], per_host: int) -> list[tuple[int, float, float]]:
    figures = []
    for hosts in counts:
        while len(cluster.workers) < hosts:
            cluster.add_worker()
        time.sleep(3)  # the new host's worker up
        jobs = many(TEMPLATE, per_host, f"tp{hosts}")
        cpu_before, started = busy(), time.monotonic()
        threading.Thread(target=cluster.submit, args=(jobs,), daemon=True).start()
        cluster.wait_delivered(jobs, 1.0, 600)
        elapsed, cpu_after = time.monotonic() - started, busy()
        share = (cpu_after[0] - cpu_before[0]) / max(cpu_after[1] - cpu_before[1], 1e-9)
        figures.append((hosts, per_host / elapsed, share))
        print(f"{hosts} worker host(s): {per_host / elapsed:6.0f} reminders/s, CPU {share:4.0%} busy", flush=True)
    return figures


def faults(cluster: Cluster, jobs_count: int, cut: float) -> tuple[Any, list[str]]:
    """The fault run: its count (`chaos.Result`) and what keeps the log from extending
    its last checkpoint (nothing, when all is well)."""
    while len(cluster.workers) < 3:
        cluster.add_worker()
    time.sleep(3)
    jobs = many(TEMPLATE, jobs_count, "faults")
    submitter = threading.Thread(target=cluster.submit, args=(jobs,), daemon=True)
    submitter.start()
    at = cluster.wait_delivered(jobs, 0.25, 300)
    cluster.hosts.cut("w2")
    threading.Timer(cut, cluster.hosts.mend, args=("w2",)).start()
    print(f"w2's link cut for {cut:g} s at {at}/{jobs_count} delivered", flush=True)
    at = cluster.wait_delivered(jobs, 0.40, 300)
    killed = cluster.hosts.kill("w3")
    print(f"w3 killed ({killed} processes) at {at}/{jobs_count} delivered", flush=True)
    submitter.join()
    time.sleep(cut + 2)  # w2 back
    drained = drain(cluster.client, cluster.broker, cluster.clock, 600)
    time.sleep(3)  # a last checkpoint after the last event
    result = count("cut + kill", jobs, drained, cluster.mail.delivered(), cluster.log, cluster.client)
    note = Checkpoints(cluster.log).latest()
    extends = Checkpoints(cluster.log).check(note, cluster.verifier) if note else ["no checkpoint was made"]
    kept = len(list((cluster.directory / "checkpoints").glob("*.txt")))
    print(f"{result.jobs} reminders: {result.exactly_once} delivered once, {len(result.lost)} lost, "
          f"{result.duplicated} delivered twice ({result.recorded} of them recorded as a second attempt), "
          f"{result.unrecorded} unrecorded; drained in {result.drain:.0f} s; chains {result.verify}; "
          f"{kept} checkpoints kept, the log {'extends the last' if not extends else 'does NOT extend it'}",
          flush=True)
    for problem in [*result.lost[:5], *extends[:5]]:
        print(f"  {problem}")
    return result, extends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--hosts", default="1,2,3")
    parser.add_argument("--per-host", type=int, default=2000)
    parser.add_argument("--cut", type=float, default=20.0)
    args = parser.parse_args()
    why = available()
    if why is not None:
        raise SystemExit(f"cannot make hosts here: {why}")
    directory = Path(tempfile.mkdtemp(prefix="dunning-cluster-"))
    cluster = Cluster(directory)
    try:
        print(f"{os.cpu_count()} cores; PostgreSQL, Redis and SMTP on {GATEWAY}; API on {cluster.api_url}",
              flush=True)
        if args.hosts:
            throughput(cluster, [int(n) for n in args.hosts.split(",")], args.per_host)
        result, extends = faults(cluster, args.jobs, args.cut)
    finally:
        cluster.close()
    if not result.ok or extends:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
