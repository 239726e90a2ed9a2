"""The console under /console: server-rendered pages for people — compliance reads the
record, operators work escalations, admins manage people and API keys. One module per
page (`signin`, `record`, `records`, `verify`, `editor`, `schedule`, `escalations`,
`simulation`, `people`, `keys`), each with an `add()` whose signature names what it
uses; here, the router that includes them, the assets, and the answer to an error.
Sessions and CSRF in `session.py`, rendering and security headers in `pages.py`; the
people, their sessions and sign-in throttling are `worker/users/`'s books.

Every page checks its role and answers 403 to another; no session → the sign-in page.
Signing in and out, failures, and every view of a person's record are `access` events
in the chained log, with who and from which address.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, Response

from worker.contact_log import ContactLog
from worker.http.console import editor, escalations, keys, people, record, records, schedule, signin, simulation, verify
from worker.http.console.frames import FRAMES
from worker.http.console.guard import Guard
from worker.http.console.pages import HEADERS, REDIS_DOWN, page
from worker.http.console.session import Cookies
from worker.settings import Settings
from worker.wiring import Books, Links

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"console.css": "text/css", "editor.js": "text/javascript"}
logger = logging.getLogger("dunning.console")



class _Answered(APIRoute):
    """Every console route answers: Redis away is a 503 page saying so (the pages that do
    not need it keep working), an unexpected error is logged and becomes a 500 page —
    here, rather than in the server's error middleware (which would also close the
    connection under a browser that keeps it alive). Both pages keep the person's
    navigation (`Guard` left their session on the request)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def answered(request: Request) -> Response:
            try:
                return await original(request)
            except (StarletteHTTPException, ClientDisconnect):
                raise
            except REDIS_DOWN as error:
                logger.warning("the queue (Redis) is unavailable answering %s %s: %s", request.method,
                               request.url.path, type(error).__name__)
                return _error_page(request, 503, "The queue is unavailable",
                                   "This page needs the queue (Redis), which does not answer just now. "
                                   "Try again in a moment; the pages that read only the contact log "
                                   "keep working.", {"Retry-After": "5"})
            except Exception:
                logger.exception("unexpected error answering %s %s", request.method, request.url.path)
                return _error_page(request, 500, "Something went wrong",
                                   "An unexpected error; it is logged on the server.")
        return answered


def _error_page(request: Request, status: int, title: str, message: str,
                headers: dict[str, str] | None = None) -> Response:
    session = getattr(request.state, "session", None)
    return page("error.html", status, headers, title=title, message=message,
                user=session.user if session else None, csrf=session.csrf if session else "")



def router(log: ContactLog, books: Books, links: Links, settings: Settings, now: Callable[[], datetime]) -> APIRouter:
    """The console: its assets, then each page's routes, each given what it uses."""
    assert settings.secret_key  # `create_app` refuses to start without it
    cookies = Cookies(settings.secret_key, settings.public_url.startswith("https://"))
    routes = APIRouter(prefix="/console", include_in_schema=False, route_class=_Answered)
    guard = Guard(log, books.people, cookies, now)

    @routes.get("/static/{name:str}")
    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            raise StarletteHTTPException(404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=HEADERS)

    @routes.get("/frames/{token:str}")
    async def frame(request: Request) -> Response:
        return FRAMES.answer(request.path_params["token"])

    signin.add(routes, guard, books.people, cookies, now)
    record.add(routes, guard, log, settings, now)  # compliance
    records.add(routes, guard, log, books.records, books.jobs, links, settings, now)
    verify.add(routes, guard, log, books.checkpoints, now)
    editor.add(routes, guard, books.library, settings, now)  # operators
    schedule.add(routes, guard, log, links, settings, now)
    escalations.add(routes, guard, log, books.jobs, links, settings, now)
    simulation.add(routes, guard, books.library, settings, now)
    people.add(routes, guard, books.people, now)  # admins
    keys.add(routes, guard, books.keys, now)

    @routes.get("/{rest:path}")  # last: a page that does not exist, with the person's navigation
    async def missing(request: Request) -> Response:
        session = guard.current(request)
        return page("error.html", 404, user=session.user if session else None, csrf=session.csrf if session else "",
                    title="Not Found", message="There is no such page.")
    return routes
