"""Intake is atomic per job from the caller's side: a job is reported accepted only once
it is on the queue. With Redis away nothing is reported accepted (exit 3, "send again"),
and the same batch sent again queues every job — never "duplicate" for a job the queue
never had. One record the database cannot store is rejected alone. On a real
redis-server, stopped and started, and on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import job_data
from sealed import MASTER_KEY, MASTER_KEY_TEXT
from test_cli import dunning

import worker
from worker.contact_log import ContactLog
from worker.db.schema import jobs
from worker.jobs.book import JobBook, JobRow
from worker.jobs.intake import Unavailable, reconcile, submit
from worker.jobs.parse import parse_job, read_jobs
from worker.local.redis_server import RedisServer
from worker.policy import profiles
from worker.queue.agenda import Agenda
from worker.queue.broker import backlog, make_broker
from worker.settings import Settings

NOW = datetime.fromisoformat("2026-12-02T10:00:00+08:00")


@pytest.fixture()
def redis_down() -> Iterator[RedisServer]:
    """A redis-server of the test's own, not running until the test starts it."""
    server = RedisServer(Path(tempfile.mkdtemp(prefix="dunning-redis-")))
    yield server
    server.stop()


def batch(n: int, tag: str = "") -> list[dict[str, object]]:
    tag = tag or uuid.uuid4().hex[:8]
    return [job_data(job_id=f"J-{tag}-{i}/due_day", invoice__id=f"INV-{tag}-{i}",
                     debtor__account_id=f"ACC-{tag}-{i}") for i in range(n)]


def parsed(jobs_: list[dict[str, object]]) -> list[object]:
    return [parse_job(job, profiles(None), f"item {i}") for i, job in enumerate(jobs_, start=1)]


def job_rows(log: ContactLog) -> dict[str, object]:
    with log.engine.connect() as conn:
        return {row.job_id: row.queued_at for row in conn.execute(jobs.select())}


def test_redis_away_nothing_is_accepted_and_the_retry_queues_everything(log: ContactLog,
                                                                       redis_down: RedisServer) -> None:
    jobs_ = batch(30)
    broker = make_broker(redis_down.url)
    first = submit(parsed(jobs_), JobBook(log), profiles(None), broker, NOW)
    assert first.accepted == 0 and len(first.unavailable) == 30 and not first.duplicates
    assert first.reason and first.reason.startswith("the queue (Redis) is unavailable")
    assert job_rows(log) == {}, "nothing recorded as accepted"
    redis_down.start()
    again = submit(parsed(jobs_), JobBook(log), profiles(None), broker, NOW)
    assert (again.accepted, again.duplicates, again.unavailable) == (30, [], [])
    assert backlog(broker) == 30
    assert all(queued is not None for queued in job_rows(log).values())
    third = submit(parsed(jobs_), JobBook(log), profiles(None), broker, NOW)
    assert third.accepted == 0 and len(third.duplicates) == 30, "once queued, a job is a duplicate"
    broker.close()


def test_the_command_exits_3_and_says_send_again(redis_down: RedisServer, tmp_path: Path) -> None:
    source = tmp_path / "jobs.jsonl"
    source.write_text("\n".join(json.dumps(job, ensure_ascii=False) for job in batch(5)) + "\n")
    env = {"DUNNING_REDIS_URL": redis_down.url, "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path}/log.db"}
    assert dunning("migrate", env=env).returncode == 0
    down = dunning("enqueue", str(source), env=env)
    assert down.returncode == 3, down.stderr
    assert "Traceback" not in down.stdout + down.stderr
    assert "the queue (Redis) is unavailable" in down.stderr and "send the same input again" in down.stderr
    assert down.stdout.startswith("0 queued, 0 duplicate(s), 0 rejected (kept as dead letters), 5 not accepted")
    redis_down.start()
    up = dunning("enqueue", str(source), env=env)
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith("5 queued, 0 duplicate(s)")


def test_the_python_api_raises_unavailable(redis_down: RedisServer, tmp_path: Path) -> None:
    settings = Settings.from_env({"DUNNING_REDIS_URL": redis_down.url, "DUNNING_MASTER_KEY": MASTER_KEY_TEXT,
                                  "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path}/log.db"})
    ContactLog.open(settings.database_url, MASTER_KEY).migrate().engine.dispose()
    jobs_ = batch(3)
    with pytest.raises(Unavailable) as raised:
        worker.enqueue(jobs_, settings=settings)
    assert len(raised.value.intake.unavailable) == 3 and "send them again" in str(raised.value)
    assert not isinstance(raised.value, ValueError), "distinct from bad input"
    redis_down.start()
    assert worker.enqueue(jobs_, settings=settings).accepted == 3


@pytest.mark.parametrize("bad", ["\u0000", "\ud800"], ids=["nul", "surrogate"])
def test_one_unstorable_record_is_rejected_alone(log: ContactLog, redis_client: object, redis_server: object,
                                                 bad: str) -> None:
    jobs_ = batch(400)
    jobs_[200]["job_id"] = f"J-bad{bad}/due_day"
    jobs_[300]["debtor"]["name"] = f"Zhang{bad}Wei"  # type: ignore[index]
    text = "\n".join(json.dumps(job) for job in jobs_).encode()  # \u escapes: valid JSON
    results = list(read_jobs(text, profiles(None)))
    assert [r.where for r in results if not r.ok] == ["line 201", "line 301"], "validate says so"
    broker = make_broker(redis_server.url)  # type: ignore[attr-defined]
    result = submit(results, JobBook(log), profiles(None), broker, NOW)
    assert result.accepted == 398 and len(result.rejected) == 2 and not result.unavailable
    assert backlog(broker) == 398
    kept = log.dead_letters()
    assert len(kept) == 2 and "job_id: contains" in kept[0]["reason"] and "debtor.name" in kept[1]["reason"]
    broker.close()


def test_the_log_refusing_one_row_rejects_that_row_alone(log: ContactLog, redis_client: object,
                                                        redis_server: object) -> None:
    """Past validation, a row the database still refuses (here: too long for its column on
    PostgreSQL, where the job table says 200) fails alone, kept as a dead letter."""
    if log.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores any length")
    from worker.jobs import intake

    jobs_ = parsed(batch(5))
    long_invoice = "I" * 201
    jobs_[2].job = jobs_[2].job.model_copy(update={"invoice": jobs_[2].job.invoice.model_copy(  # type: ignore
        update={"id": long_invoice})})
    broker = make_broker(redis_server.url)  # type: ignore[attr-defined]
    result = intake.submit(jobs_, JobBook(log), profiles(None), broker, NOW)
    assert result.accepted == 4 and len(result.rejected) == 1
    assert "cannot store this job" in log.dead_letters()[0]["reason"]
    broker.close()


def test_a_job_recorded_but_never_queued_is_queued_by_the_reconciler(log: ContactLog, redis_client: object,
                                                                     redis_server: object) -> None:
    """An intake killed between recording and queueing: the next intake of the same job
    takes it, or the worker's reconciler queues it once it is old enough."""
    jobs_ = [job for job in (p.job for p in parsed(batch(3))) if job is not None]  # type: ignore[attr-defined]
    rows = [JobRow(j.job_id, j.invoice.id, j.debtor.account_id, json.dumps(j.to_json())) for j in jobs_]
    assert JobBook(log).take_jobs(rows, NOW)[0] == [j.job_id for j in jobs_]
    broker = make_broker(redis_server.url)  # type: ignore[attr-defined]
    agenda = Agenda(redis_client)  # type: ignore[arg-type]
    book = JobBook(log)
    in_progress = reconcile(book, profiles(None), broker, agenda, NOW + timedelta(seconds=30))
    assert in_progress == 0, "an intake in progress is left alone"
    retried = submit(parsed([jobs_[0].to_json()]), JobBook(log), profiles(None), broker, NOW)
    assert retried.accepted == 1 and not retried.duplicates, "the caller's retry takes it"
    assert reconcile(JobBook(log), profiles(None), broker, agenda, NOW + timedelta(minutes=5)) == 2
    assert backlog(broker) == 3
    assert all(queued is not None for queued in job_rows(log).values())
    assert reconcile(JobBook(log), profiles(None), broker, agenda, NOW + timedelta(minutes=10)) == 0
    broker.close()


def test_a_registration_the_agenda_refused_is_taken_back(log: ContactLog, redis_down: RedisServer) -> None:
    job = job_data(job_id="REG-1", invoice__id="INV-REG-1", cadence="default", stage=None)
    job.pop("stage", None)
    broker = make_broker(redis_down.url)
    result = submit(parsed([job]), JobBook(log), profiles(None), broker, NOW)
    assert result.unavailable == ["REG-1"] and result.registered == 0
    assert job_rows(log) == {}
    redis_down.start()
    again = submit(parsed([job]), JobBook(log), profiles(None), broker, NOW)
    assert again.registered > 0 and not again.unavailable
    assert Agenda(broker.client).pending() == again.registered
    broker.close()
