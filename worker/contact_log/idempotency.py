"""The billing API's idempotency keys, kept in the log's database so that every server
process sees them: the first request with a key runs, a retry of it (same API key, same
key, same body, within 24 hours) gets the first answer again. Bookkeeping, outside the
hash chain; expired keys are purged as new ones come in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.db.schema import idempotency

KEPT_FOR = timedelta(hours=24)


@dataclass(frozen=True)
class Remembered:
    """What the first request with a key did: its body's hash, and its answer (None while it runs)."""

    body_hash: str
    status: int | None
    response: str | None


class IdempotencyBook:
    """The idempotency keys' reads and writes (mixed into `ContactLog`)."""

    engine: Engine

    def remember_request(self, api_key: str, key: str, body_hash: str, now: datetime) -> Remembered | None:
        """None when this request is the first with `key` (it is now in flight, and the
        caller must `answered` or `forget_request`); otherwise what the first one did."""
        module: Any = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        claim = (module.insert(idempotency).on_conflict_do_nothing(index_elements=["api_key", "key"])
                 .returning(idempotency.c.id))
        where = (idempotency.c.api_key == api_key, idempotency.c.key == key)
        with self.engine.begin() as conn:
            conn.execute(delete(idempotency).where(*where, idempotency.c.created_at < now - KEPT_FOR))
            if conn.execute(claim, {"api_key": api_key, "key": key, "body_hash": body_hash,
                                    "created_at": now}).scalar() is not None:
                return None
            row = conn.execute(select(idempotency).where(*where)).one()
        return Remembered(row.body_hash, row.status, row.response)

    def answered(self, api_key: str, key: str, status: int, response: str, now: datetime) -> None:
        """Keep the first request's answer; purge what has expired meanwhile."""
        with self.engine.begin() as conn:
            conn.execute(update(idempotency).where(idempotency.c.api_key == api_key, idempotency.c.key == key)
                         .values(status=status, response=response))
            conn.execute(delete(idempotency).where(idempotency.c.created_at < now - KEPT_FOR))

    def forget_request(self, api_key: str, key: str) -> None:
        """The first request failed on our side (a 5xx, an outage): a retry runs afresh."""
        with self.engine.begin() as conn:
            conn.execute(delete(idempotency).where(idempotency.c.api_key == api_key, idempotency.c.key == key))
