"""Signing in and out, and the console's front door (`/console/` → the person's landing
page): the one part of the console open without a session. A sign-in form carries its
own CSRF token (a cookie of its own, before any session); failed sign-ins are throttled
per name and address (`worker/users/people.py`), and every attempt is an `access` event."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from worker.http.console.guard import Guard, address_of
from worker.http.console.pages import HEADERS, LANDING, page
from worker.http.console.session import FORM_COOKIE, Cookies, same
from worker.metrics import SIGNIN_FAILURES
from worker.users.people import People


class SignIn:
    def __init__(self, people: People, cookies: Cookies, guard: Guard, now: Callable[[], datetime]) -> None:
        self.people, self.cookies, self.guard, self.now = people, cookies, guard, now

    async def home(self, request: Request) -> Response:
        session = self.guard.current(request)
        target = LANDING[session.user.role] if session else "/console/sign-in"
        return RedirectResponse(target, status_code=303, headers=HEADERS)

    async def form(self, request: Request) -> Response:
        if self.guard.current(request) is not None:
            return RedirectResponse("/console/", status_code=303, headers=HEADERS)
        token, new = self.cookies.form_token(request)
        response = page("sign_in.html", problem=None, username="", csrf=token)
        if new:
            self.cookies.set_form(response, token)
        return response

    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("username") or "")[:100], str(form.get("password") or "")
        expected = request.cookies.get(FORM_COOKIE)
        if not same(expected, form.get("csrf")):
            return page("error.html", 403, title="Form expired",
                        message="The sign-in form has expired: open it again.")
        address = address_of(request)
        wait = self.people.sign_in_wait(name, address, self.now())
        if wait > 0:
            SIGNIN_FAILURES.labels("throttled").inc()
            return page("sign_in.html", 429, {"retry-after": str(math.ceil(wait))}, username=name,
                        csrf=expected or "",
                        problem=f"Too many failed sign-ins: try again in {math.ceil(wait)} seconds.")
        session = self.people.sign_in(name, password, address, self.now())
        if session is None:
            SIGNIN_FAILURES.labels("refused").inc()
            return page("sign_in.html", 401, username=name, csrf=expected or "",
                        problem="The username or the password is not right.")
        response = RedirectResponse(LANDING[session.user.role], status_code=303, headers=HEADERS)
        self.cookies.set_session(response, session.token)
        return response

    async def sign_out(self, request: Request) -> Response:
        session = self.guard.current(request)
        form = await request.form()
        if session is not None and same(session.csrf, form.get("csrf")):
            self.people.sign_out(session.token, self.now(), address_of(request))
        response = RedirectResponse("/console/sign-in", status_code=303, headers=HEADERS)
        self.cookies.end_session(response)
        return response


def add(routes: APIRouter, guard: Guard, people: People, cookies: Cookies, now: Callable[[], datetime]) -> None:
    pages = SignIn(people, cookies, guard, now)
    routes.get("/")(pages.home)
    routes.get("/sign-in")(pages.form)
    routes.post("/sign-in")(pages.sign_in)
    routes.post("/sign-out")(pages.sign_out)
