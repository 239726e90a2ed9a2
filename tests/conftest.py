"""Shared helpers: the DESIGN.md sample job, built up with overrides, and the profiles."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sealed import MASTER_KEY, MASTER_KEY_TEXT

from schedules import Facts, Profiles
from worker.jobs.contract import Job
from worker.policy import profiles as loaded_profiles

os.environ["DUNNING_MASTER_KEY"] = MASTER_KEY_TEXT  # every `dunning` a test runs seals under it

SAMPLE: dict[str, Any] = {
    "job_id": "INV-2026-0042/due_day",
    "invoice": {"id": "INV-2026-0042", "number": "2026-0042", "amount_due": "12800.00", "currency": "CNY",
                "due_date": "2026-12-01", "issued_date": "2026-11-01",
                "payment_url": "https://pay.example.com/i/INV-2026-0042"},
    "debtor": {"account_id": "ACME-001", "name": "张伟", "company": "上海某某贸易有限公司",
               "email": "zhang.wei@example.com", "phone": "+8613800138000", "locale": "zh-CN",
               "timezone": "Asia/Shanghai", "country": "CN", "preferred_channel": "email",
               "consent": {"email": True, "sms": True, "voice": False}},
    "stage": None,
    "profile": "default",
}


def job_data(**changes: Any) -> dict[str, Any]:
    """The sample job with changes: `debtor__phone="..."` sets a nested field; None deletes it.

    A changed due date drops the sample's issue date unless one is given too.
    """
    data = copy.deepcopy(SAMPLE)
    if "invoice__due_date" in changes:
        changes.setdefault("invoice__issued_date", None)
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        target = data
        for parent in parents:
            target = target[parent]
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return data


def make_job(**changes: Any) -> Job:
    return Job.model_validate(job_data(**changes), context={"profiles": loaded_profiles(None)})


def at(text: str, zone: str | None = None) -> datetime:
    """An aware datetime: ISO with offset, or local wall time in `zone`."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=ZoneInfo(zone)) if zone else moment


def facts(**values: Any) -> Facts:
    import json

    return Facts.model_validate_json(json.dumps(values))


@pytest.fixture(scope="session")
def profiles() -> Profiles:
    return loaded_profiles(None)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback for the whole test session
    (`worker/local/postgres.py`)."""
    from worker.local.postgres import Postgres

    try:
        cluster = Postgres(Path(tempfile.mkdtemp(prefix="dunning-pg-")), "dunning_test").start()
    except RuntimeError as missing:
        pytest.fail(f"{missing}; `make test` installs it")
    try:
        yield cluster.url
    finally:
        cluster.stop()



@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    from worker.local.redis_server import RedisServer

    server = RedisServer(Path(tempfile.mkdtemp(prefix="dunning-redis-"))).start()
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture()
def redis_client(redis_server: Any) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def emptied(log: Any) -> None:
    """A PostgreSQL log with no record left: every table emptied but the chains (the log's shape)."""
    from sqlalchemy import text

    from worker.db.schema import metadata

    with log.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables if t.name != 'chains')} "
                          "RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An empty contact log on each database: SQLite in a folder still to be made, and the
    session's PostgreSQL cluster, truncated."""
    from worker.contact_log import ContactLog

    if request.param == "sqlite":
        opened = ContactLog.open(f"sqlite:///{tmp_path}/var/dunning.db", MASTER_KEY).migrate()
    else:
        opened = ContactLog.open(request.getfixturevalue("postgres_url"), MASTER_KEY).migrate()
        emptied(opened)
    yield opened
    opened.engine.dispose()


from harness import harness  # noqa: E402, F401 (the end-to-end fixture: a real worker per test module)

