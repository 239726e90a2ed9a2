"""The worker under real faults: a redis-server restarted in place (AOF), the
`dunning worker` parent SIGKILLed, a message whose actor has a bug, retries that run
out, a retry whose enqueue meets Redis away, a message stranded in a live worker's
acknowledgement set. Real processes and servers throughout."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from conftest import job_data
from dramatiq.middleware import Retries
from fakes.hang import Hang
from fakes.smtp import Scripted
from test_cli import dunning

from worker.actors import DeadLetters, DurableRetries
from worker.backoff import Backoff
from worker.contact_log import ContactLog
from worker.jobs.book import JobBook
from worker.jobs.intake import submit
from worker.jobs.parse import parse_job
from worker.local.redis_server import RedisServer
from worker.local.stack import Stack
from worker.policy import profiles
from worker.queue.broker import ACTOR, QUEUE, REDIS_TIMEOUTS, enqueue_many, make_broker, message, worth_retrying
from worker.queue.envelope import envelope_for
from worker.queue.stranded import recover_stranded

WEDNESDAY_10 = datetime.fromisoformat("2026-12-02T10:00:00+08:00")


def jobs(n: int, tag: str) -> list[dict[str, Any]]:
    return [job_data(job_id=f"F-{tag}-{i}/due_day", invoice__id=f"INV-F-{tag}-{i}", invoice__number=f"F{tag}{i}",
                     debtor__account_id=f"ACC-F-{tag}-{i}", debtor__email=f"f{tag}{i}@example.com",
                     debtor__preferred_channel=None, debtor__consent={"email": True, "sms": False, "voice": False})
            for i in range(n)]


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except FileNotFoundError:
            continue
        for child in map(int, children):
            found |= {child} | descendants(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture()
def stack() -> Iterator[tuple[Stack, ContactLog, Scripted]]:
    directory = Path(tempfile.mkdtemp(prefix="dunning-faults-"))
    mail = Scripted(directory / "mail")
    stack = Stack(directory, smtp_handler=mail).start()
    log = ContactLog.open(stack.env()["DUNNING_DATABASE_URL"], stack.master_key).migrate()
    stack.set_clock(WEDNESDAY_10)
    yield stack, log, mail
    stack.stop()
    log.engine.dispose()
    shutil.rmtree(directory, ignore_errors=True)


def restart_redis(stack: Stack, down_for: float) -> None:
    stack.redis.stop()
    time.sleep(down_for)
    stack.redis.start()


def test_redis_restarts_lose_nothing_and_send_nothing_twice(stack: tuple[Stack, ContactLog, Scripted]) -> None:
    """With a send rate set, every reminder goes through the agenda (a send slot), so a
    Redis restart meets reminders mid-way and the dispatcher mid-loop."""
    the_stack, log, mail = stack
    health = the_stack.directory / "worker.health"
    the_stack.start_worker(processes=1, threads=4, extra_env={
        "DUNNING_EMAIL_PER_SECOND": "20", "DUNNING_HEALTH_FILE": str(health)})
    batch = jobs(60, "r")
    submit([parse_job(job, profiles(None), "test") for job in batch], JobBook(log), profiles(None),
           the_stack.broker, WEDNESDAY_10)
    time.sleep(1.0)
    restart_redis(the_stack, 2.0)
    time.sleep(1.0)
    restart_redis(the_stack, 1.0)
    the_stack.wait_idle(timeout=120, settle=3.0)
    sent = [m["To"] for m in mail.messages()]
    assert sorted(sent) == sorted(job["debtor"]["email"] for job in batch), "each exactly once"
    statuses = {row["job_id"]: row["status"] for row in log.history() if row["kind"] == "delivery"}
    assert set(statuses.values()) == {"sent"} and len(statuses) == 60
    # The dispatcher came back by itself: a deferral made now still comes due.
    late = jobs(1, "late")[0]
    the_stack.agenda.schedule(late["job_id"], envelope_for(parse_job(late, profiles(None)).job),  # type: ignore[arg-type]
                              the_stack.clock.now() + timedelta(seconds=1))
    the_stack.wait_idle(timeout=30)
    assert [m["To"] for m in mail.messages()].count(late["debtor"]["email"]) == 1
    check = dunning("worker", "--check", env={"DUNNING_HEALTH_FILE": str(health)})
    assert check.returncode == 0 and "healthy" in check.stdout, check.stderr
    worker_log = (the_stack.directory / "worker.log").read_text(errors="replace")
    assert "@example.com" not in worker_log.replace("***@example.com", ""), "no address unmasked in the log"


def test_killing_the_worker_parent_stops_its_dramatiq_processes(stack: tuple[Stack, ContactLog, Scripted]) -> None:
    the_stack, _log, _mail = stack
    parent = the_stack.start_worker(processes=1, threads=2)
    deadline = time.monotonic() + 20
    while len(descendants(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    children = descendants(parent.pid)
    assert len(children) >= 2, "dramatiq's main process and its worker process"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in children), "no orphaned worker keeps running without its dispatcher"


def test_the_check_says_what_is_wrong(tmp_path: Path) -> None:
    from worker.supervisor import check

    health = tmp_path / "worker.health"
    assert "no health file" in check(health, time.time())[0]
    import json

    now = 1_000_000.0
    health.write_text(json.dumps({"pid": 1, "written_at": now - 1, "loops": {
        "dispatcher": {"last_ok": now - 90, "failing_since": now - 90, "error": "ConnectionError: refused",
                       "alive": True},
        "reconciler": {"last_ok": now - 1, "failing_since": None, "error": None, "alive": True}}}))
    assert check(health, now) == ["dispatcher: failing for 90 s: ConnectionError: refused"]
    assert check(health, now + 30)[0].startswith("the worker (pid 1) last wrote its health")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_loop_survives_its_dependency_and_a_dead_thread_is_restarted() -> None:
    from worker import supervisor

    calls = {"flaky": 0, "dies": 0}

    def flaky() -> float:
        calls["flaky"] += 1
        if calls["flaky"] <= 3:
            raise redis.exceptions.ConnectionError("Connection refused")
        return 0.01

    def dies() -> float:
        calls["dies"] += 1
        raise SystemExit("a thread that ends")  # not an Exception: the loop's thread really dies

    stop = threading.Event()
    loops = [supervisor.Loop("flaky", flaky), supervisor.Loop("dies", dies)]
    try:
        watcher = supervisor.Supervisor(loops, stop, time.time, backoff=Backoff(0.01, 30.0))
        watcher.start()
        code = watcher.watch(lambda: True, every=0.05)
    finally:
        stop.set()
    assert calls["flaky"] > 3 and loops[0].failing_since is None, "came back by itself"
    assert calls["dies"] == supervisor.MAX_RESTARTS + 1 and code == 1, "restarted, then the process exits"


def _run_worker(broker: dramatiq.Broker, until: threading.Event, timeout: float = 30) -> None:
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert until.wait(timeout)
        time.sleep(0.5)  # let the after-hooks run
    finally:
        worker.stop()


def test_a_bug_and_exhausted_retries_are_dead_lettered(redis_server: Any, log: ContactLog) -> None:
    broker = make_broker(redis_server.url, extra=[DeadLetters(log)], heartbeat_ms=5_000,
                         retries=Retries(retry_when=lambda n, e: n < 1 and worth_retrying(n, e), min_backoff=10,
                                         max_backoff=20))
    calls: list[str] = []
    done = threading.Event()

    @dramatiq.actor(broker=broker, queue_name="faults-test")
    def flaky(kind: str) -> None:
        calls.append(kind)
        if sorted(calls) == ["bug", "outage", "outage"]:
            done.set()
        raise (TypeError("a bug") if kind == "bug" else OSError("network down"))

    flaky.send("bug")
    flaky.send("outage")
    _run_worker(broker, done)
    broker.close()
    kept = log.dead_letters()
    assert sorted(calls) == ["bug", "outage", "outage"]
    assert sorted(k["reason"].split(":")[0] for k in kept) == ["OSError", "TypeError"], kept


def test_a_retry_whose_enqueue_meets_redis_away_is_not_lost(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    broker = make_broker(server.url, heartbeat_ms=5_000,
                         retries=DurableRetries(retry_when=lambda n, e: n < 3, min_backoff=10, max_backoff=20))
    runs: list[int] = []
    failing = threading.Event()
    done = threading.Event()

    @dramatiq.actor(broker=broker, queue_name="durable-test")
    def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            server.stop()  # Redis goes away while the job runs: its retry cannot be queued now
            failing.set()
            raise OSError("the database is away")
        done.set()

    job.send()
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert failing.wait(15)
        time.sleep(3)
        server.start()  # back on the same port, with its AOF
        assert done.wait(60), "the retry reached the queue once Redis was back, and ran"
    finally:
        worker.stop()
        broker.close()
        server.stop()
    assert len(runs) == 2


def test_a_message_stranded_in_a_live_workers_ack_set_goes_back(redis_server: Any, redis_client: Any) -> None:
    broker = make_broker(redis_server.url)
    enqueue_many(broker, [{"job": {"job_id": "S-1"}}])
    [message_id] = [m.decode() for m in redis_client.lrange("dramatiq:reminders", 0, -1)]
    # What a fetch whose reply was lost leaves behind: the id moved to a worker's ack set.
    redis_client.lrem("dramatiq:reminders", 0, message_id)
    redis_client.sadd("dramatiq:__acks__.live-worker.reminders", message_id)
    seen: dict[tuple[str, str], float] = {}
    assert recover_stranded(broker, seen, now=100.0, after=60.0) == 0, "not yet: it may be in hand"
    assert recover_stranded(broker, seen, now=150.0, after=60.0) == 0
    assert recover_stranded(broker, seen, now=161.0, after=60.0) == 1
    assert [m.decode() for m in redis_client.lrange("dramatiq:reminders", 0, -1)] == [message_id]
    assert redis_client.scard("dramatiq:__acks__.live-worker.reminders") == 0 and not seen
    broker.close()
    assert message({"x": 1}).queue_name == "reminders"


def test_a_frozen_redis_strands_no_message_for_long(stack: tuple[Stack, ContactLog, Scripted]) -> None:
    """Redis frozen (SIGSTOP) past the clients' socket timeout (15 s) under a running
    worker: calls time out mid-fetch and mid-ack. Once it answers again, every message
    nobody is working on is back on the queue within a minute or so — not after
    DUNNING_STRANDED_AFTER_S (30 minutes) — and each reminder is sent exactly once."""
    the_stack, log, mail = stack
    the_stack.start_worker(processes=2, threads=8, extra_env={"DUNNING_EMAIL_PER_SECOND": "10"})
    batch = jobs(100, "z")
    submit([parse_job(job, profiles(None), "test") for job in batch], JobBook(log), profiles(None),
           the_stack.broker, WEDNESDAY_10)
    time.sleep(2.0)
    assert the_stack.redis.process is not None
    os.kill(the_stack.redis.process.pid, signal.SIGSTOP)
    try:
        time.sleep(REDIS_TIMEOUTS["socket_timeout"] + 4)
    finally:
        os.kill(the_stack.redis.process.pid, signal.SIGCONT)
    resumed = time.monotonic()
    the_stack.wait_idle(timeout=150, settle=3.0)
    assert time.monotonic() - resumed < 100, "back within a minute or so, not half an hour"
    sent = [m["To"] for m in mail.messages()]
    assert sorted(sent) == sorted(job["debtor"]["email"] for job in batch), "each exactly once"


def test_a_fetch_whose_reply_is_lost_in_a_hang_strands_nothing_for_long(
        stack: tuple[Stack, ContactLog, Scripted]) -> None:
    """Redis hangs, as its clients see it, at the moment a worker fetches (a relay holds
    the fetch and everything after it; `fakes.hang`): the fetch times out, the worker
    gives it up and reconnects; when Redis answers again it carries out the held fetch
    — messages moved into the worker's ack set, the reply to nobody — and the acks the
    workers could not make then. Every reminder is still sent exactly once, and within a
    minute or so of Redis answering: the stranded ones go back (`worker.queue.stranded`),
    and acks that timed out are retried, not given up (`broker._Broker`)."""
    the_stack, log, mail = stack
    with Hang(the_stack.redis.port) as relay:
        worker = the_stack.start_worker(processes=2, threads=8,
                                        extra_env={"DUNNING_REDIS_URL": f"redis://127.0.0.1:{relay.port}/0"})
        batch = jobs(400, "h")
        submit([parse_job(job, profiles(None), "test") for job in batch], JobBook(log), profiles(None),
               the_stack.broker, WEDNESDAY_10)
        deadline = time.monotonic() + 60
        while len(mail.messages()) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        # dramatiq's fetch from the reminders' queue (not from its delay queue, whose fetch
        # carries nothing here): EVALSHA ... "fetch" <timestamp> "reminders" ...
        fetch = re.compile(rb"\$5\r\nfetch\r\n\$\d+\r\n\d+\r\n\$%d\r\n%s\r\n" % (len(QUEUE), QUEUE.encode()))
        assert relay.hang_at(fetch).wait(30), "a worker fetched"
        time.sleep(REDIS_TIMEOUTS["socket_timeout"] + 4)
        relay.resume()
        resumed = time.monotonic()
        direct = redis.Redis.from_url(the_stack.redis.url)
        while time.monotonic() - resumed < 150 and (
                len(mail.messages()) < len(batch) or any(direct.scard(k) for k in direct.keys("dramatiq:__acks__.*"))):
            time.sleep(0.2)
        took = time.monotonic() - resumed  # until every reminder is sent and nothing is left to ack
        assert any(ACTOR.encode() in reply for reply in relay.lost), "a fetch's messages went to nobody: the fault"
        sent = [m["To"] for m in mail.messages()]
        assert sorted(sent) == sorted(job["debtor"]["email"] for job in batch), "each exactly once"
        assert took < 100, f"back within a minute or so, not half an hour ({took:.0f} s)"
        said = (the_stack.directory / "worker.log").read_text()
        assert "back on its queue" in said and "held by nobody" in said, "the lost fetch's messages went back"
        assert "Unhandled error during post_process_message" not in said
        the_stack.stop_workers()
        assert worker.returncode == 0


def test_a_live_worker_reports_what_it_holds_and_what_it_does_not_goes_back_at_once(
        redis_server: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real dramatiq worker with a message in hand and, in its ack set, one it never
    received (what a lost fetch reply leaves): the one it holds stays, the other goes
    back within the grace period — not after DUNNING_STRANDED_AFTER_S — and runs."""
    import uuid

    from worker.queue import stranded
    monkeypatch.setattr(stranded, "REPORT_EVERY", 0.2)
    broker = make_broker(redis_server.url, heartbeat_ms=60_000)
    ran: list[int] = []
    started, release, both = threading.Event(), threading.Event(), threading.Event()

    @dramatiq.actor(broker=broker, queue_name="held-test")
    def slow(n: int) -> None:
        ran.append(n)
        started.set()
        if n == 1:
            release.wait(30)
        if len(ran) == 2:
            both.set()

    slow.send(1)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert started.wait(10)
        lost = slow.message(2).copy(options={"redis_message_id": str(uuid.uuid4())})
        lost_id = lost.options["redis_message_id"]
        acks = f"dramatiq:__acks__.{broker.broker_id}.held-test"
        redis_client.hset("dramatiq:held-test.msgs", lost_id, lost.encode())
        redis_client.sadd(acks, lost_id)
        seen: dict[tuple[str, str], float] = {}
        assert recover_stranded(broker, seen, after=1800, grace=1.0) == 0, "just seen"
        time.sleep(1.5)
        assert recover_stranded(broker, seen, after=1800, grace=1.0) == 1, "nobody holds it: back"
        assert redis_client.smembers(acks) - {lost_id.encode()}, "the message in hand stays in the ack set"
        release.set()
        assert both.wait(15), "the lost message ran once back on its queue"
    finally:
        release.set()
        worker.stop()
        broker.close()
    assert sorted(ran) == [1, 2]
