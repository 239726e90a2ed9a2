"""Each request `dunning serve` answers, in the metrics: its duration by route template,
method and status (`HTTP_REQUESTS`). The route's template (`/v1/jobs/{job_id}`), never
the path itself, so a label cannot take a job id or an unsubscribe token; a path no
route matched is `unmatched`. A plain ASGI middleware, not Starlette's
`BaseHTTPMiddleware`, which would buffer every streamed response (the CSV exports)."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.metrics import HTTP_REQUESTS

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Measured:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500  # an exception before the answer: the server's 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(_template(scope.get("route")), method if method in METHODS else "other",
                                 str(status)).observe(time.perf_counter() - started)


def _template(route: Any) -> str:
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"
