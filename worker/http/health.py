"""`/healthz` and `/readyz` on `dunning serve`'s own port, for Kubernetes' probes and
load balancers: the process answers; the database and Redis answer within a deadline
and the schema is this code's (`worker.monitoring.readiness`). No key is needed and
nothing is said beyond which dependency failed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from worker.monitoring import Check, readiness


def router(checks: Mapping[str, Check]) -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    @routes.get("/healthz")
    async def healthz() -> JSONResponse:
        """The process answers."""
        return JSONResponse({"status": "ok", "checks": {}}, headers={"cache-control": "no-store"})

    @routes.get("/readyz")
    async def readyz() -> JSONResponse:
        """What the server needs answers: 200, or 503 naming what failed."""
        verdicts = await asyncio.to_thread(readiness, checks)
        ready = all(verdict == "ok" for verdict in verdicts.values())
        return JSONResponse({"status": "ok" if ready else "unavailable", "checks": verdicts},
                            status_code=200 if ready else 503, headers={"cache-control": "no-store"})

    return routes
