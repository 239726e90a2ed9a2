"""Backups of the contact log: the whole database as of one moment, and every chain's
head as of that same moment, so a restore can be proven whole.

A backup taken while workers write must not claim more than it holds: heads read a
moment after the copy would name events the copy lacks, and the restore would fail its
own check (or, read before, pass while missing some). So the heads come from the copy's
own snapshot:

- PostgreSQL: a repeatable-read transaction here exports its snapshot
  (`pg_export_snapshot`), reads the heads, and `pg_dump --format=custom --snapshot=…`
  dumps exactly what that transaction sees while the workers go on.
- SQLite: the online backup API copies the file's pages as of one read transaction
  (WAL: the writer is not stopped); the heads are then read from the copy, and the
  copy's chains are verified on the spot.

What comes back (`Taken`) is written beside the copy as a manifest; with a checkpoint
key the heads are also a signed checkpoint (`checkpoints.py`), which `dunning log verify
--checkpoint` checks a restored log against.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from worker.contact_log.chain import GENESIS
from worker.contact_log.checkpoints import Checkpoints, write_once
from worker.contact_log.note import Checkpoint, Signer
from worker.db.schema import events

if TYPE_CHECKING:
    from worker.contact_log import ContactLog

_NEWEST = select(events.c.id, events.c.digest).order_by(events.c.id.desc()).limit(1)
_COUNT = select(func.count()).select_from(events)


class BackupError(Exception):
    """The backup could not be taken (no pg_dump, the folder, the dump failed): said plainly."""


@dataclass(frozen=True)
class Taken:
    """A backup: its file, and what the log held in it."""

    path: Path
    taken_at: datetime
    events: int
    head: str  # the newest event in the copy, ID:DIGEST (`dunning log verify --head`)
    heads: dict[int, tuple[int, str]]  # every chain's size and head in the copy
    intact: bool | None  # SQLite: the copy's chains verified; PostgreSQL: None (verify after restoring)

    def manifest(self, checkpoint: Path | None) -> dict[str, object]:
        """What is written beside the copy: enough to restore it and check the restore."""
        return {"file": self.path.name, "sha256": _sha256(self.path), "taken_at": self.taken_at.isoformat(),
                "events": self.events, "head": self.head, "chains": len(self.heads) - 1,
                "verified": self.intact, "checkpoint": checkpoint.name if checkpoint else None}


def take(log: ContactLog, folder: Path, now: datetime, signer: Signer | None = None) -> tuple[Taken, Path, Path | None]:
    """Back the log up into `folder`: the copy, its manifest (`.json`) and, with `signer`,
    a signed checkpoint of the copy's heads (`.checkpoint.txt`). Returns the backup and
    the two paths. Nothing is overwritten: each backup's names carry its time."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BackupError(f"{folder}: {error.strerror}") from None
    stem = folder / f"dunning-{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}"
    if log.engine.dialect.name == "postgresql":
        taken = _postgresql(log, stem.with_suffix(".dump"), now)
    else:
        taken = _sqlite(log, stem.with_suffix(".sqlite3"), now)
    checkpoint = None
    if signer is not None:
        checkpoint = stem.with_suffix(".checkpoint.txt")
        write_once(checkpoint, signer.sign(Checkpoint(signer.name, now, taken.heads).text()))
    manifest = stem.with_suffix(".json")
    write_once(manifest, json.dumps(taken.manifest(checkpoint), indent=2) + "\n")
    return taken, manifest, checkpoint


def _postgresql(log: ContactLog, path: Path, now: datetime) -> Taken:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError("pg_dump is not installed (Debian: postgresql-client)")
    url = log.engine.url
    environment = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    target = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    with log.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        taken = _contents(log, conn, path, now, intact=None)
        dumped = subprocess.run([pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={path}",
                                 f"--dbname={target}"], env=environment, capture_output=True, text=True, check=False)
    if dumped.returncode != 0:
        path.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {dumped.stderr.strip()[:500]}")
    return taken


def _sqlite(log: ContactLog, path: Path, now: datetime) -> Taken:
    source = log.engine.url.database
    if not source or source == ":memory:":
        raise BackupError("the log is in memory: nothing to back up")
    with sqlite3.connect(source) as original, sqlite3.connect(path) as copy:
        original.backup(copy)  # all pages in one step: one read transaction, one state
    copied = type(log).open(f"sqlite:///{path}")
    try:
        with copied.engine.connect() as conn:
            return _contents(copied, conn, path, now, intact=copied.verify().intact)
    finally:
        copied.engine.dispose()


def _contents(log: ContactLog, conn: Connection, path: Path, now: datetime, intact: bool | None) -> Taken:
    """What the log holds as `conn` sees it."""
    newest = conn.execute(_NEWEST).one_or_none()
    head = f"{newest.id}:{newest.digest}" if newest is not None else f"0:{GENESIS}"
    return Taken(path, now, int(conn.execute(_COUNT).scalar_one()), head, Checkpoints(log).heads(conn), intact)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
