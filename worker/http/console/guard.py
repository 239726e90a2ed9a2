"""Who may open a console page, and the record that they looked: `Guard(role)` wraps a
handler so that no session leads to the sign-in page, another role gets 403, and a POST
without this session's CSRF token is refused; `note_access` files an `access` event.
Every page module (`signin`, `record`, `editor`, `schedule`, ...) uses the one guard the
router builds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from worker.contact_log import ContactLog
from worker.contact_log.kinds import AccessStatus, Event, Kind
from worker.contact_log.parties import normalised
from worker.http.console.pages import HEADERS, page
from worker.http.console.session import Cookies, same
from worker.users.people import People, Session

Handler = Callable[[Request, Session], Awaitable[Response]]


def address_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"
Page = Callable[[Request], Awaitable[Response]]


class Guard:
    def __init__(self, log: ContactLog, people: People, cookies: Cookies, now: Callable[[], datetime]) -> None:
        self.log, self.people, self.cookies, self.now = log, people, cookies, now

    def current(self, request: Request) -> Session | None:
        token = self.cookies.token(request)
        return self.people.session(token, self.now()) if token else None

    def __call__(self, role: str) -> Callable[[Handler], Page]:
        """A page for one role."""
        def wrap(handler: Handler) -> Page:
            async def guarded(request: Request) -> Response:
                session = self.current(request)
                if session is None:
                    return RedirectResponse("/console/sign-in", status_code=303, headers=HEADERS)
                request.state.session = session  # for the error pages (`_Answered`): their navigation
                if session.user.role != role:
                    return page("error.html", 403, user=session.user, csrf=session.csrf, title="Not for your role",
                                message=f"This page is not open to the {session.user.role} role.")
                if request.method == "POST":
                    form = await request.form()
                    if not same(session.csrf, form.get("csrf")):
                        return page("error.html", 403, user=session.user, csrf=session.csrf, title="Form expired",
                                    message="The form was not this session's (or it expired): open the page again.")
                return await handler(request, session)
            return guarded
        return wrap

    def note_access(self, session: Session, request: Request, status: AccessStatus, **what: Any) -> None:
        """Record who looked at what. A search for an address is filed under that address,
        so the query is sealed with the person's data and erased with it."""
        searched = normalised(str(what.get("search") or ""))
        about = searched if "@" in searched or searched.startswith("+") else None
        self.log.record(Event(Kind.ACCESS, status, address=about,
                              detail={"user": session.user.name, "address": address_of(request), **what}), self.now())
