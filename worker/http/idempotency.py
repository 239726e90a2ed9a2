"""`Idempotency-Key` on every POST of the billing API (DESIGN.md): the same key and body
within 24 hours → the first answer again, with `Idempotency-Replayed: true`; the same key
with another body → 422; while the first request with that key is still running (in any
process: the keys live in the database) → 409 with `Retry-After`. Keys belong to the API
key that sent them. An answer we failed to give (5xx) is not kept: a retry runs afresh."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from worker.contact_log import ContactLog
from worker.http.problems import MEDIA_TYPE, Problem
from worker.users.keys import ApiKey

HEADER = "idempotency-key"
MAX_KEY = 255


async def once(request: Request, caller: ApiKey, body: bytes, log: ContactLog, now: Callable[[], datetime],
               handle: Callable[[], Awaitable[Response]]) -> Response:
    """Answer `handle()` once per Idempotency-Key (or every time, without one)."""
    key = request.headers.get(HEADER)
    if key is None:
        return await handle()
    if not 0 < len(key) <= MAX_KEY:
        raise Problem(422, f"Idempotency-Key: 1 to {MAX_KEY} characters expected, got {len(key)}",
                      [{"path": "Idempotency-Key", "message": f"1 to {MAX_KEY} characters expected"}])
    digest = hashlib.sha256(body).hexdigest()
    seen = await run_in_threadpool(log.remember_request, caller.name, key, digest, now())
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
        await run_in_threadpool(log.forget_request, caller.name, key)
        raise
    if response.status_code >= 500:
        await run_in_threadpool(log.forget_request, caller.name, key)
    else:
        await run_in_threadpool(log.answered, caller.name, key, response.status_code, bytes(response.body).decode(),
                                now())
    return response
