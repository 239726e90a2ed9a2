"""The log's checkpoints: every chain's size and head, signed (`note.py`), kept in the
log and, with a folder (`DUNNING_CHECKPOINT_DIR`), written outside it.

The worker makes one every `DUNNING_CHECKPOINT_EVERY_S` (10 s) while events come in,
and anyone may ask for one (`dunning log checkpoint --make`). A checkpoint kept
outside the database is what shows a chain was cut short or rewritten after it: the
log must still pass through every head it saw (`check`). It says nothing about the
order of events in different chains, and nothing about what was written after it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.engine import Connection

from worker.contact_log import chain
from worker.contact_log.note import Checkpoint, NoteError, Signer, Verifier
from worker.contact_log.queries import reading
from worker.contact_log.store import Store
from worker.db.schema import chains, checkpoints, events

_CLOSED = select(chains.c.size, chains.c.head).where(chains.c.chain == 0)
_LATEST = select(checkpoints.c.note).order_by(checkpoints.c.id.desc()).limit(1)
_AT = select(events.c.digest).where(events.c.chain == bindparam("chain"), events.c.position == bindparam("position"))
_ONE_MAKER = text("SELECT pg_try_advisory_xact_lock(727002)")  # several worker hosts: one makes it


class Checkpoints:
    """Making, keeping and checking the log's checkpoints."""

    def __init__(self, log: Store) -> None:
        self.log = log
        self.engine = log.engine

    def heads(self, conn: Connection | None = None) -> dict[int, tuple[int, str]]:
        """Every chain's size and head now, chain 0 (closed) included: one statement, so
        one snapshot of them all. With `conn`, as that connection sees them (a backup's
        snapshot, or its copy)."""
        count = self.log.chain_count()
        with reading(self.engine, conn) as c:
            closed = c.execute(_CLOSED).one()
            found = self.log.chain_heads(c, range(1, count + 1))
        return {0: (int(closed.size), closed.head), **found}

    def latest(self) -> str | None:
        """The newest checkpoint's signed note, if one was made."""
        with self.engine.connect() as conn:
            note: str | None = conn.execute(_LATEST).scalar()
        return note

    def last_made_at(self) -> datetime | None:
        """When the newest checkpoint was made (None: never)."""
        with self.engine.connect() as conn:
            made: datetime | None = conn.execute(select(func.max(checkpoints.c.made_at))).scalar()
        return made

    def make(self, signer: Signer, now: datetime, folder: Path | None = None, *, always: bool = False) -> str | None:
        """A new checkpoint, signed, kept, and written to `folder` — unless the heads are
        those of the newest one (new events only; `always` makes one anyway), or another
        process is making one now. Returns its note, or None."""
        heads = self.heads()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql" and not conn.execute(_ONE_MAKER).scalar():
                return None
            last = conn.execute(_LATEST).scalar()
            if last is not None and not always and Checkpoint.in_note(last).heads == heads:
                return None
            made = Checkpoint(signer.name, now, heads)
            note = signer.sign(made.text())
            conn.execute(insert(checkpoints).values(made_at=now, size=made.size, note=note))
        if folder is not None:
            write_once(folder / f"checkpoint-{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{made.size}.txt", note)
        return note

    def check(self, note: str, verifier: Verifier | None = None, account: str | None = None) -> list[str]:
        """What keeps the log from extending this checkpoint (nothing: it does): a bad
        signature (with `verifier`), and every chain that no longer passes through the
        head the checkpoint saw at its size. With `account`, its chain only."""
        try:
            seen = Checkpoint.parse(verifier.open(note)) if verifier is not None else Checkpoint.in_note(note)
        except NoteError as error:
            return [str(error)]
        count = self.log.chain_count()
        if set(seen.heads) != set(range(count + 1)):
            return [f"the checkpoint has {len(seen.heads) - 1} chains, this log {count}: another log's checkpoint?"]
        wanted: Mapping[int, tuple[int, str]] = seen.heads
        if account is not None:
            number = chain.of_account(account, count)
            wanted = {number: seen.heads[number]}
        problems = []
        with self.engine.connect() as conn:
            closed = conn.execute(_CLOSED).one()
            for number, (size, head) in sorted(wanted.items()):
                if number == 0:
                    found = head if (int(closed.size), closed.head) == (size, head) else None
                else:
                    found = conn.execute(_AT, {"chain": number, "position": size}).scalar() if size else head
                if found != head:
                    problems.append(f"chain {number}: the checkpoint of {seen.at.isoformat()} saw {size} events "
                                    f"ending {head[:16]}…; the log " + ("has no event there: cut short" if found is None
                                                                       else f"has {found[:16]}… there: rewritten"))
        return problems


def write_once(path: Path, note: str) -> None:
    """Write a new file, never over one (the folder may be a write-once volume)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(note)
