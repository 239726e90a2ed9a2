"""`Idempotency-Key` on every POST of the billing API (DESIGN.md): the same key and body
within 24 hours → the first answer again, with `Idempotency-Replayed: true`; the same key
with another body → 422; while the first request with that key is still running (in any
process: the keys live in the database) → 409 with `Retry-After`. Keys belong to the API
key that sent them. An answer we failed to give (5xx) is not kept: a retry runs afresh."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from starlette.concurrency import run_in_threadpool

from worker.db.schema import idempotency
from worker.http.problems import MEDIA_TYPE, Problem
from worker.users.keys import ApiKey

HEADER = "idempotency-key"
MAX_KEY = 255
KEPT_FOR = timedelta(hours=24)


@dataclass(frozen=True)
class Remembered:
    """What the first request with a key did: its body's hash, and its answer (None while it runs)."""

    body_hash: str
    status: int | None
    response: str | None


class Answers:
    """The idempotency keys' book: kept in the log's database, so that every server process
    sees them. Bookkeeping, outside the hash chain; expired keys are purged as new ones
    come in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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



async def once(request: Request, caller: ApiKey, body: bytes, answers: Answers, now: Callable[[], datetime],
               handle: Callable[[], Awaitable[Response]]) -> Response:
    """Answer `handle()` once per Idempotency-Key (or every time, without one)."""
    key = request.headers.get(HEADER)
    if key is None:
        return await handle()
    if not 0 < len(key) <= MAX_KEY:
        raise Problem(422, f"Idempotency-Key: 1 to {MAX_KEY} characters expected, got {len(key)}",
                      [{"path": "Idempotency-Key", "message": f"1 to {MAX_KEY} characters expected"}])
    digest = hashlib.sha256(body).hexdigest()
    seen = await run_in_threadpool(answers.remember_request, caller.name, key, digest, now())
    if seen is not None:
        if seen.body_hash != digest:
            raise Problem(422, "Idempotency-Key: used before with another body; use a new key for a new request",
                          [{"path": "Idempotency-Key", "message": "used before with another body"}])
        if seen.status is None or seen.response is None:
            raise Problem(409, "the first request with this Idempotency-Key is still running; try again shortly",
                          headers={"Retry-After": "1"})
        return Response(seen.response, seen.status, headers={"Idempotency-Replayed": "true"},
                        media_type=MEDIA_TYPE if seen.status >= 400 else "application/json")
    try:
        response = await handle()
    except Problem as problem:
        response = problem.response(request)
    except BaseException:
        await run_in_threadpool(answers.forget_request, caller.name, key)
        raise
    if response.status_code >= 500:
        await run_in_threadpool(answers.forget_request, caller.name, key)
    else:
        await run_in_threadpool(answers.answered, caller.name, key, response.status_code, bytes(response.body).decode(),
                                now())
    return response
