"""Who is asking: the console's session cookie and its CSRF token.

The cookie holds a random token and its HMAC under `DUNNING_SECRET_KEY` (signed: a
cookie not made here is refused before the database is asked); the log keeps only the
token's SHA-256 (`worker/users/people.py`). HttpOnly, SameSite=Strict, Path
/console, Secure when the public URL is https. Every form carries the session's CSRF
token; the sign-in form, before any session, a token bound to a cookie of its own
(double submit). Both are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "dunning_console"
FORM_COOKIE = "dunning_form"  # the sign-in form's CSRF token, before a session exists
PATH = "/console"


class Cookies:
    def __init__(self, secret: str, secure: bool) -> None:
        self.key, self.secure = hashlib.sha256(b"dunning:console:" + secret.encode()).digest(), secure

    def _mac(self, token: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.key, token.encode(), hashlib.sha256).digest()).decode()

    def token(self, request: Request) -> str | None:
        """The session token of the request's cookie, if its signature holds."""
        token, _, mac = request.cookies.get(SESSION_COOKIE, "").partition(".")
        if token and mac and hmac.compare_digest(self._mac(token), mac):
            return token
        return None

    def set_session(self, response: Response, token: str) -> None:
        response.set_cookie(SESSION_COOKIE, f"{token}.{self._mac(token)}", path=PATH, httponly=True,
                            samesite="strict", secure=self.secure)

    def end_session(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=PATH, httponly=True, samesite="strict", secure=self.secure)

    def form_token(self, request: Request) -> tuple[str, bool]:
        """The sign-in form's CSRF token: the cookie's, or a new one (True: set it with `set_form`)."""
        token = request.cookies.get(FORM_COOKIE) or ""
        return (token, False) if len(token) >= 32 else (secrets.token_urlsafe(32), True)

    def set_form(self, response: Response, token: str) -> None:
        response.set_cookie(FORM_COOKIE, token, path=PATH, httponly=True, samesite="strict", secure=self.secure)


def same(expected: str | None, given: object) -> bool:
    """A CSRF check: `given` (a form field) is the expected token, compared in constant time."""
    return bool(expected) and isinstance(given, str) and hmac.compare_digest(expected or "", given)
