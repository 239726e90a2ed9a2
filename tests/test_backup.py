"""`dunning log backup`, taken while the log is written to, restored the way the README's
"Backups and restores" says, and proven to be the log backed up: the restored log
verifies against the backup's signed checkpoint and its newest event, holds exactly the
events the manifest counts (nothing after the backup's head is claimed), and a restore
cut short is caught."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from worker.contact_log import ContactLog
from worker.contact_log.kinds import Event, InvoiceStatus, Kind
from worker.contact_log.note import keygen
from worker.db.schema import events

DUNNING = str(Path(sys.executable).parent / "dunning")
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class Writer(threading.Thread):
    """Load: payments recorded across many accounts (so many chains) until told to stop."""

    def __init__(self, log: ContactLog) -> None:
        super().__init__(daemon=True)
        self.log, self.written, self.halt, self.error = log, 0, threading.Event(), None
        self.progress = threading.Condition()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                n = self.written
                self.log.record(Event(Kind.INVOICE, InvoiceStatus.PAID, invoice_id=f"INV-{n}",
                                      account_id=f"ACME-{n % 97}"), NOW)
                with self.progress:
                    self.written += 1
                    self.progress.notify_all()
        except Exception as error:  # noqa: BLE001 (reported by the test)
            self.error = error

    def wait_for(self, count: int) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: self.written >= count or self.error is not None, timeout=60)
        assert self.error is None, self.error


def restore(backup: Path, url: str, into: Path) -> str:
    """The README's restore: SQLite, copy the file into place; PostgreSQL, pg_restore into
    a new, empty database. Returns the restored log's URL."""
    if backup.suffix == ".sqlite3":
        shutil.copyfile(backup, into / "restored.db")
        return f"sqlite:///{into}/restored.db"
    target = make_url(url).set(database=f"restored_{uuid.uuid4().hex[:8]}")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    libpq = target.set(drivername="postgresql").render_as_string(hide_password=False)
    restored = subprocess.run([shutil.which("pg_restore") or "pg_restore", "--no-owner", "--exit-on-error",
                               f"--dbname={libpq}", str(backup)], capture_output=True, text=True, timeout=120)
    assert restored.returncode == 0, restored.stderr
    return target.render_as_string(hide_password=False)


def test_a_backup_under_load_restores_to_the_log_it_names(log: ContactLog, tmp_path: Path) -> None:
    url = log.engine.url.render_as_string(hide_password=False)
    private, public = keygen("billing.example.com/dunning")
    (tmp_path / "key.pub").write_text(public + "\n")
    env = {**os.environ, "DUNNING_DATABASE_URL": url, "DUNNING_CHECKPOINT_KEY": private}

    def dunning(*args: str, database: str = url) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DUNNING, *args], capture_output=True, text=True, timeout=180,
                              env={**env, "DUNNING_DATABASE_URL": database})

    writer = Writer(log)
    writer.start()
    try:
        writer.wait_for(200)
        taken = dunning("log", "backup", str(tmp_path / "backups"))
        before_end = writer.written
        writer.wait_for(before_end + 100)  # the log goes on after the backup
    finally:
        writer.halt.set()
        writer.join(30)
    assert writer.error is None, writer.error
    assert taken.returncode == 0, taken.stderr
    assert "Traceback" not in taken.stderr
    (manifest_path,) = (tmp_path / "backups").glob("*.json")
    manifest = json.loads(manifest_path.read_text())
    backup, checkpoint = tmp_path / "backups" / manifest["file"], tmp_path / "backups" / manifest["checkpoint"]
    assert hashlib.sha256(backup.read_bytes()).hexdigest() == manifest["sha256"]
    assert 200 <= manifest["events"] <= before_end, "the backup holds what was written before it ended"
    assert manifest["verified"] is (True if backup.suffix == ".sqlite3" else None)
    live_events = _count(url)
    assert live_events > manifest["events"], "the writer went on during and after the backup"

    restored = restore(backup, url, tmp_path)
    newest = create_engine(restored)
    with newest.connect() as conn:
        count = conn.execute(select(func.count()).select_from(events)).scalar_one()
        last = conn.execute(select(events.c.id, events.c.digest).order_by(events.c.id.desc()).limit(1)).one()
    newest.dispose()
    assert count == manifest["events"] and f"{last.id}:{last.digest}" == manifest["head"], (
        "the restore holds exactly what the manifest names: nothing after its head is claimed")

    against_checkpoint = ("log", "verify", "--checkpoint", str(checkpoint), "--public-key", str(tmp_path / "key.pub"))
    ok = dunning(*against_checkpoint, database=restored)
    assert ok.returncode == 0, ok.stderr
    assert "the log extends the checkpoint" in ok.stdout and f"intact: {count} events" in ok.stdout
    assert dunning("log", "verify", "--head", manifest["head"], database=restored).returncode == 0
    assert dunning(*against_checkpoint).returncode == 0, "the live log extends the backup's checkpoint too"

    cut = create_engine(restored)  # a restore that lost its newest events is caught
    with cut.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE id = :id"), {"id": last.id})
    cut.dispose()
    short = dunning(*against_checkpoint, database=restored)
    assert short.returncode == 1 and "cut short" in short.stderr and "Traceback" not in short.stderr


def test_backup_says_what_went_wrong(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/dunning.db"
    ContactLog.open(url).migrate().engine.dispose()
    (tmp_path / "a-file").write_text("")
    refused = subprocess.run([DUNNING, "log", "backup", str(tmp_path / "a-file" / "backups")], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "DUNNING_DATABASE_URL": url})
    assert refused.returncode == 1 and "backup:" in refused.stderr and "Traceback" not in refused.stderr
    plain = subprocess.run([DUNNING, "log", "backup", str(tmp_path / "backups")], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "DUNNING_DATABASE_URL": url})
    assert plain.returncode == 0 and "check a restore with --head" in plain.stdout
    (manifest,) = (tmp_path / "backups").glob("*.json")
    assert json.loads(manifest.read_text())["checkpoint"] is None


def _count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = int(conn.execute(select(func.count()).select_from(events)).scalar_one())
    engine.dispose()
    return found
