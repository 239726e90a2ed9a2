"""Intake's book of jobs (the `jobs` table): what was accepted, with its JSON, and whether
it reached the queue. Bookkeeping outside the hash chain — `queued_at` is the one
column ever updated — so that a job is reported accepted only once it is queued, and a
job recorded but never queued is found again (`worker.jobs.intake.reconcile`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from worker.contact_log import parties
from worker.contact_log.store import Store, insert_or_nothing
from worker.db.schema import jobs
from worker.db.vault import ERASED


@dataclass(frozen=True)
class JobRow:
    """A job as intake records it: its ids, its JSON, and for a cadence step its registration."""

    job_id: str
    invoice_id: str
    account_id: str
    payload: str
    parent_id: str | None = None


class JobBook:
    """Intake's reads and writes of the jobs table; `log` is the store whose dead letters
    and events intake also writes."""

    def __init__(self, log: Store) -> None:
        self.log = log
        self.engine = log.engine
        self.vault = log.vault
        self._take = insert_or_nothing(log.engine.dialect.name, jobs, "job_id")

    def accept_job(self, job_id: str, invoice_id: str, account_id: str, payload: str, now: datetime) -> bool:
        """Record a job as accepted and queued at once (the simulator's intake, which has no
        queue to miss); False if its job_id was accepted before (one reminder)."""
        taken, _dup = self.take_jobs([JobRow(job_id, invoice_id, account_id, payload)], now)
        self.mark_queued(taken, now)
        return bool(taken)

    def take_jobs(self, rows: Iterable[JobRow], now: datetime) -> tuple[list[str], list[str]]:
        """Record jobs before they are queued: (taken, duplicates).

        Taken: new ids, and ids recorded before but never queued (an intake that failed
        or died before the queue had them: this one queues them, with its payload).
        Duplicates: ids already queued, or taken by another intake at this moment, or
        repeated in `rows`. One transaction for the batch; the caller queues what it took,
        then `mark_queued` — or `release` when the queue refused them.
        """
        wanted: dict[str, JobRow] = {}
        duplicates: list[str] = []
        for row in rows:
            (duplicates.append(row.job_id) if row.job_id in wanted else wanted.__setitem__(row.job_id, row))
        if not wanted:
            return [], duplicates
        taken: list[str] = []
        with self.engine.begin() as conn:
            known: dict[str, Any] = {}
            ids = list(wanted)
            for start in range(0, len(ids), 500):
                known.update((row.job_id, row.queued_at) for row in conn.execute(
                    select(jobs.c.job_id, jobs.c.queued_at).where(jobs.c.job_id.in_(ids[start:start + 500]))))
            fresh = [wanted[i] for i in ids if i not in known]
            self.vault.prepare(conn, {("account", row.account_id) for row in wanted.values()})  # keys at hand, batched
            if fresh:
                inserted = set(conn.execute(self._take, [
                    {"job_id": r.job_id, "invoice_id": r.invoice_id, "account_id": r.account_id,
                     "payload": self._sealed(conn, r), "received_at": now, "parent_id": r.parent_id}
                    for r in fresh]).scalars())
                taken.extend(r.job_id for r in fresh if r.job_id in inserted)
                duplicates.extend(r.job_id for r in fresh if r.job_id not in inserted)
            for job_id, queued_at in known.items():
                if queued_at is not None:
                    duplicates.append(job_id)
                    continue
                row = wanted[job_id]
                conn.execute(jobs.update().where(jobs.c.job_id == job_id, jobs.c.queued_at.is_(None))
                             .values(payload=self._sealed(conn, row), received_at=now, parent_id=row.parent_id))
                taken.append(job_id)
            parties.mark(conn, self.vault, [(wanted[i].account_id, wanted[i].payload) for i in taken])
        return taken, duplicates

    def _sealed(self, conn: Any, row: JobRow) -> str:
        return self.vault.seal(conn, ("account", row.account_id), "payload", row.payload)

    def mark_queued(self, job_ids: Iterable[str], now: datetime) -> None:
        """These jobs are on the queue (or in the agenda) now: accepted for good."""
        ids = list(job_ids)
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(jobs.update().where(jobs.c.job_id.in_(ids[start:start + 500]),
                                                 jobs.c.queued_at.is_(None)).values(queued_at=now))

    def release(self, job_ids: Iterable[str]) -> None:
        """The queue did not take these jobs: forget them, so that nothing says they were
        accepted and the caller's retry takes them as new."""
        ids = list(job_ids)
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(jobs.delete().where(jobs.c.job_id.in_(ids[start:start + 500]),
                                                 jobs.c.queued_at.is_(None)))

    def unqueued(self, before: datetime, limit: int = 500) -> list[dict[str, Any]]:
        """Jobs recorded before `before` and never queued, registrations and plain jobs
        (a cadence step goes with its registration): what the reconciler queues."""
        with self.engine.connect() as conn:
            return [self.vault.open_row(r._mapping) for r in conn.execute(
                select(jobs.c.job_id, jobs.c.payload, jobs.c.received_at)
                .where(jobs.c.queued_at.is_(None), jobs.c.received_at < before, jobs.c.parent_id.is_(None))
                .order_by(jobs.c.received_at).limit(limit))]

    def job_row(self, job_id: str) -> dict[str, Any] | None:
        """A job as intake recorded it (ids, JSON, when received and queued), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()
        return self.vault.open_row(row._mapping) if row is not None else None

    def invoice_jobs(self, invoice_id: str) -> list[dict[str, Any]]:
        """The jobs accepted for an invoice (its registration and its steps), oldest first."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(jobs.c.job_id, jobs.c.account_id, jobs.c.parent_id, jobs.c.received_at)
                .where(jobs.c.invoice_id == invoice_id).order_by(jobs.c.received_at, jobs.c.job_id))]

    def erased_jobs(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Of these job ids, those whose account was erased since: {job id: account id}."""
        ids = list(job_ids)
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                found.update((row.job_id, row.account_id) for row in conn.execute(
                    select(jobs.c.job_id, jobs.c.account_id)
                    .where(jobs.c.job_id.in_(ids[start:start + 500]), jobs.c.payload == ERASED)))
        return found
