"""`Authorization: Bearer KEY` for the billing API: a missing, unknown or revoked key is
401, a key without the route's scope 403. The key is looked up by its SHA-256 and
compared in constant time (`worker.users.keys`); it is never logged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from worker.http.problems import Problem
from worker.users.keys import ApiKey, Keys

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dunning"'}


def requirer(keys: Keys, now: Callable[[], datetime]) -> Callable[[str], Callable[[Request], Awaitable[ApiKey]]]:
    """`require(scope)`: a FastAPI dependency answering with the caller's key."""

    def require(scope: str) -> Callable[[Request], Awaitable[ApiKey]]:
        async def caller(request: Request) -> ApiKey:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Problem(401, "an API key is required: Authorization: Bearer KEY", headers=_CHALLENGE)
            key = await run_in_threadpool(keys.authenticate, token.strip(), now())
            if key is None:
                raise Problem(401, "this API key is not valid (unknown or revoked)", headers=_CHALLENGE)
            if scope not in key.scopes:
                raise Problem(403, f"this API key lacks the scope {scope!r}")
            return key

        return caller

    return require
