"""Rolling upgrades: the release before and this one on one database at once.

The previous release is taken from git — the commit before the newest migration came
in, so `dunning migrate` has something to do — and run from its own sources with this
environment's packages. It makes the database, sends, goes on sending while this
release migrates, sends on the migrated schema, runs beside this release's worker, and
stops at SIGTERM as a rollout stops it: every reminder sent once, the log intact.
Beside it, the rule that makes this hold (migrations from `ROLLING_SINCE` on are
expand-only unless they say what they need) and the older release's side of it (a
database a newer release migrated is left alone, and used)."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from worker.contact_log import ContactLog
from worker.db import migrations

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ROOT / "worker" / "db" / "migrations" / "versions"
DUNNING = str(Path(sys.executable).parent / "dunning")
# What the release before reads must stay: a migration may add, not take away or narrow.
CONTRACTING = {"drop_table", "drop_column", "rename_table", "alter_column", "execute"}

sys.path.insert(0, str(ROOT / "bench"))


def _revision(path: Path) -> str:
    return path.name.split("_", 1)[0]


def _locks(call: ast.Call) -> bool:
    """`op.execute("LOCK TABLE …")`: taking a lock first changes nothing the release before reads."""
    return (call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
            and call.args[0].value.startswith("LOCK TABLE ")) is True


def test_migrations_since_the_rule_only_expand() -> None:
    """Each migration's upgrade() is read: from ROLLING_SINCE on, one that drops, renames,
    alters a column or runs raw SQL must be in STOP_THE_WORLD, saying what it needs."""
    checked = 0
    for path in sorted(VERSIONS.glob("0*.py")):
        revision = _revision(path)
        if revision < migrations.ROLLING_SINCE or revision in migrations.STOP_THE_WORLD:
            continue
        (upgrade,) = (node for node in ast.parse(path.read_text()).body
                      if isinstance(node, ast.FunctionDef) and node.name == "upgrade")
        used = {node.func.attr for node in ast.walk(upgrade)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not _locks(node)}
        assert not used & CONTRACTING, (
            f"{path.name}: {sorted(used & CONTRACTING)} in upgrade(): the release before may still read it; "
            "split it (expand now, contract a release later) or add it to STOP_THE_WORLD with what it needs")
        checked += 1
    assert checked >= 1
    assert set(migrations.STOP_THE_WORLD) <= {_revision(p) for p in VERSIONS.glob("0*.py")}


def test_a_database_a_newer_release_migrated_is_left_alone_and_used(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/dunning.db"
    log = ContactLog.open(url).migrate()
    with log.engine.begin() as conn:  # as a newer release's expand-only migration leaves it
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        conn.execute(text("CREATE TABLE from_the_future (id INTEGER PRIMARY KEY)"))
    env = {**os.environ, "DUNNING_DATABASE_URL": url}
    migrated = subprocess.run([DUNNING, "migrate"], capture_output=True, text=True, env=env, timeout=60)
    assert migrated.returncode == 0, migrated.stderr
    assert "newer than this release's" in migrated.stdout
    assert migrations.current(log.engine) == "9999", "not downgraded, not touched"
    assert not migrations.pending(log.engine)
    shown = subprocess.run([DUNNING, "log", "verify"], capture_output=True, text=True, env=env, timeout=60)
    assert shown.returncode == 0 and "intact" in shown.stdout, shown.stderr
    with log.engine.begin() as conn:  # an older one than this code is still behind, and said so
        conn.execute(text("UPDATE alembic_version SET version_num = '0013'"))
    assert migrations.pending(log.engine)
    refused = subprocess.run([DUNNING, "log", "show"], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 2 and "dunning migrate" in refused.stderr
    log.engine.dispose()


def test_a_migration_waits_for_a_writer_instead_of_deadlocking_with_it(postgres_url: str) -> None:
    """A worker's transaction that has read events and then writes them, while the newest
    migration runs: the migration must wait for it, not deadlock (0014 did: SHARE to build
    an index, then ACCESS EXCLUSIVE to drop one, with the writer between the two)."""
    database = f"upgrade_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    engine = create_engine(make_url(postgres_url).set(database=database))
    newest = sorted(VERSIONS.glob("0*.py"))[-1]
    migrations.upgrade(engine, _down_revision(newest))
    failed: list[BaseException] = []

    def migrate() -> None:
        try:
            migrations.upgrade(engine)
        except BaseException as error:  # noqa: BLE001 (reported below)
            failed.append(error)

    try:
        with engine.connect() as worker:
            worker.execute(text("SELECT count(*) FROM events"))  # the writer has read...
            migrating = threading.Thread(target=migrate)
            migrating.start()
            with admin.connect() as watch:  # ...the migration now waits on a lock on events...
                deadline = time.monotonic() + 30
                while not watch.execute(_WAITING, {"database": database}).scalar_one():
                    assert time.monotonic() < deadline and migrating.is_alive(), failed
                    time.sleep(0.05)
            worker.execute(text("UPDATE events SET kind = kind WHERE false"))  # ...and the writer writes
            worker.commit()
        migrating.join(60)
        assert not failed, failed
        assert migrations.current(engine) == migrations.head()
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


_WAITING = text("SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND NOT granted "
               "AND database = (SELECT oid FROM pg_database WHERE datname = :database)")


def _down_revision(path: Path) -> str:
    (found,) = (node.value.value for node in ast.parse(path.read_text()).body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "down_revision"
                and isinstance(node.value, ast.Constant))
    return str(found)


def previous_release() -> str:
    """The commit before the newest migration was added (HEAD, if it is not committed yet)."""
    newest = sorted(VERSIONS.glob("0*.py"))[-1].relative_to(ROOT)
    git = ["git", "-C", str(ROOT)]
    if subprocess.run([*git, "rev-parse", "--is-shallow-repository"], capture_output=True, text=True,
                      check=True).stdout.strip() == "true":
        pytest.skip("a shallow clone has no previous release: clone with history")
    added = subprocess.run([*git, "log", "--diff-filter=A", "--format=%H", "--", str(newest)], capture_output=True,
                           text=True, check=True).stdout.split()
    return f"{added[-1]}^" if added else "HEAD"


def checkout(commit: str, into: Path) -> Path:
    """The release's sources (not installed: run with this environment's packages), marked
    so that every process running them leaves its pid in $DUNNING_TEST_OLD_RAN."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit, "worker", "channels",
                              "schedules", "templates"], capture_output=True, check=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    init = into / "worker" / "__init__.py"
    init.write_text(init.read_text() + "\nimport os as _os\nif _os.environ.get('DUNNING_TEST_OLD_RAN'):\n"
                    "    open(_os.path.join(_os.environ['DUNNING_TEST_OLD_RAN'], str(_os.getpid())), 'w').close()\n")
    return into


@pytest.mark.chaos
def test_the_release_before_runs_through_migrate_and_beside_this_one() -> None:
    import chaos

    from worker.jobs.samples import many

    commit = previous_release()
    directory = Path(tempfile.mkdtemp(prefix="dunning-upgrade-"))
    old = checkout(commit, directory / "old")
    ran = directory / "old-ran"
    ran.mkdir()
    world = chaos.World(directory, processes=1, threads=8, migrated=False)
    old_env = {**world.env, "PYTHONPATH": str(old), "DUNNING_HEALTH_FILE": str(directory / "old.health"),
               "DUNNING_TEST_OLD_RAN": str(ran)}
    old_dunning = [sys.executable, "-m", "worker.cli"]
    batches = [many(chaos.TEMPLATE, size, f"U{n}{uuid.uuid4().hex[:5]}") for n, size in enumerate((400, 100, 100))]
    old_worker: subprocess.Popen[bytes] | None = None

    def run(command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], cwd=old if command is old_dunning else None, env=env,
                              capture_output=True, text=True, timeout=300)

    def enqueue(command: list[str], env: dict[str, str], jobs: list[dict[str, Any]]) -> None:
        source = directory / f"jobs-{uuid.uuid4().hex[:6]}.jsonl"
        source.write_text("".join(chaos.json.dumps(job) + "\n" for job in jobs), encoding="utf-8")
        done = run(command, env, "enqueue", str(source))
        assert done.returncode == 0, done.stderr[-2000:]

    def sent(jobs: list[dict[str, Any]]) -> int:
        addresses = {job["debtor"]["email"] for job in jobs}
        return sum(n for to, n in world.mail.delivered().items() if to in addresses)

    def wait_sent(jobs: list[dict[str, Any]], at_least: int) -> None:
        deadline = time.monotonic() + 120
        while sent(jobs) < at_least:
            assert time.monotonic() < deadline, f"{sent(jobs)} of {at_least} sent in 120 s"
            assert old_worker is None or old_worker.poll() is None, (directory / "old.log").read_text()[-3000:]
            time.sleep(0.05)

    try:
        made = run(old_dunning, old_env, "migrate")
        assert made.returncode == 0, made.stderr[-2000:]
        before = migrations.current(world.log.engine)
        assert before != migrations.head() and before in migrations.known(), "the old release's own schema"
        old_worker = subprocess.Popen([*old_dunning, "worker", "--processes", "1", "--threads", "8"], cwd=old,
                                      env=old_env, stdout=open(directory / "old.log", "wb"),  # noqa: SIM115
                                      stderr=subprocess.STDOUT, start_new_session=True)
        enqueue(old_dunning, old_env, batches[0])
        wait_sent(batches[0], 25)
        sending = sent(batches[0])
        upgraded = run([DUNNING], world.env, "migrate")  # this release migrates while the old one sends
        assert upgraded.returncode == 0, upgraded.stderr[-2000:]
        assert sending < sent(batches[0]), "the old worker went on sending while the schema changed under it"
        assert migrations.current(world.log.engine) == migrations.head()
        # The old worker, alone, on the migrated schema, sends what this release took in. (A
        # process of the old release started now would refuse: it predates ROLLING_SINCE.)
        enqueue([DUNNING], world.env, batches[1])
        wait_sent(batches[1], 50)
        world.start_worker()  # this release beside it
        enqueue([DUNNING], world.env, batches[2])
        wait_sent(batches[2], 25)
        old_worker.send_signal(signal.SIGTERM)  # the rollout stops the old one
        assert old_worker.wait(timeout=120) == 0, (directory / "old.log").read_text()[-3000:]
        drained = world.drain(timeout=300)
        jobs = [job for batch in batches for job in batch]
        result = world.count("rolling-upgrade", jobs, drained)
        assert len(list(ran.iterdir())) >= 3, "the old release's sources ran: its migrate, its worker, its enqueue"
        assert drained >= 0, "drained"
        assert not result.lost, result.lost[:5]
        assert result.exactly_once == len(jobs) and not result.duplicated and not result.unrecorded
        assert result.verify == "intact"
        assert b"Traceback" not in (directory / "old.log").read_bytes()
        assert b"Traceback" not in (directory / "worker.log").read_bytes()
    finally:
        if old_worker is not None and old_worker.poll() is None:
            os.killpg(old_worker.pid, signal.SIGKILL)
            old_worker.wait()
        world.close()
