"""Rendering the console's pages: Jinja2 with autoescape (names, notes, provider texts
and template output are data, never markup), the templates and the stylesheet shipped
in this package (nothing from the internet), and the security headers every page and
answer under /console carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from worker.http.console.frames import FRAMES

# No inline script or style, nothing from another origin; messages are shown in
# sandboxed frames of our own (frame-src 'self', `frames.py`); nobody may frame the console. The
# editor's script asks for its preview from the same origin (connect-src 'self').
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
           "x-frame-options": "DENY", "cache-control": "no-store", "cross-origin-opener-policy": "same-origin"}

_ENV = Environment(loader=PackageLoader("worker.http.console", "templates"),
                   autoescape=select_autoescape(default=True), undefined=StrictUndefined, trim_blocks=True,
                   lstrip_blocks=True)
_ENV.globals["frame_url"] = FRAMES.url  # an email's HTML in a frame of its own (`frames.py`)

NAVIGATION = {  # the links each role sees, named for their pages (DESIGN.md § The console)
    "compliance": (("Search", "/console/search"), ("Records", "/console/records"), ("Verify", "/console/verify")),
    "operator": (("Templates", "/console/templates"), ("Schedule", "/console/schedule"),
                 ("Escalations", "/console/escalations"), ("Simulate", "/console/simulate")),
    "admin": (("People", "/console/people"), ("API keys", "/console/keys")),
}
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)  # what a page that needs the queue meets with it away
LANDING = {"compliance": "/console/search", "operator": "/console/escalations", "admin": "/console/people"}


def page(template: str, status: int = 200, headers: Mapping[str, str] | None = None, **context: Any) -> HTMLResponse:
    context.setdefault("user", None)
    context.setdefault("csrf", "")
    context["navigation"] = NAVIGATION.get(context["user"].role, ()) if context["user"] else ()
    return HTMLResponse(_ENV.get_template(template).render(**context), status_code=status,
                        headers={**HEADERS, **(headers or {})})


def fragment(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Part of a page (the editor's preview pane, refreshed by its script), with the same headers."""
    return HTMLResponse(_ENV.get_template(template).render(**context), status_code=status, headers=HEADERS)
