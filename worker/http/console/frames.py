"""An email's HTML shown as it was sent, in a frame of its own.

A `srcdoc` frame inherits the console page's Content-Security-Policy, which allows no
inline style: the email would be shown without its styles, not as sent. So the HTML is
served from its own address (`/console/frames/TOKEN`) under a policy of its own — the
email's inline styles and `data:` images, no script, nothing from elsewhere, framed
only by the console — in a frame sandboxed without scripts. The token (128 random bits)
is the only way to it, kept in this process for `SECONDS` (at most `KEEP` of them): a
page shows what it rendered a moment ago."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict

from starlette.responses import HTMLResponse, Response

KEEP = 512
SECONDS = 30 * 60
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; base-uri 'none'; "
       "form-action 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
           "x-frame-options": "SAMEORIGIN", "cache-control": "no-store"}


class Frames:
    def __init__(self, keep: int = KEEP, seconds: float = SECONDS) -> None:
        self.keep, self.seconds = keep, seconds
        self._held: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def url(self, html: str) -> str:
        """Keep `html`; the address the frame loads it from."""
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._held[token] = (time.monotonic(), html)  # not the business clock: how long a cache keeps
            while len(self._held) > self.keep:
                self._held.popitem(last=False)
        return f"/console/frames/{token}"

    def answer(self, token: str) -> Response:
        with self._lock:
            found = self._held.get(token)
        if found is None or time.monotonic() - found[0] > self.seconds:
            return HTMLResponse("<!doctype html><p>This preview has expired: open the page again.</p>", 404,
                                headers=HEADERS)
        return HTMLResponse(found[1], headers=HEADERS)


FRAMES = Frames()  # one per serving process: the pages that show a frame and the route that serves it
