"""The admin's People page: who may sign in to the console, in which role; adding a
person and disabling one (their sessions end at once). The book is `worker/users/people.py`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from worker.http.console.guard import Guard
from worker.http.console.pages import page
from worker.users.people import People, PersonProblem, Session


class PeoplePage:
    def __init__(self, people: People, now: Callable[[], datetime]) -> None:
        self.people, self.now = people, now

    def shown(self, session: Session, status: int = 200, **said: Any) -> Response:
        return page("people.html", status, user=session.user, csrf=session.csrf, people=self.people.people(),
                    problem=said.get("problem"), done=said.get("done"))

    async def view(self, request: Request, session: Session) -> Response:
        return self.shown(session)

    async def add_person(self, request: Request, session: Session) -> Response:
        form = await request.form()
        try:
            added = self.people.add_user(str(form.get("name") or ""), str(form.get("role") or ""),
                                         str(form.get("password") or ""), self.now(), by=f"console:{session.user.name}")
        except PersonProblem as problem:
            return self.shown(session, 422, problem=str(problem))
        return self.shown(session, done=f"{added.name} added ({added.role}).")

    async def disable(self, request: Request, session: Session) -> Response:
        name = str((await request.form()).get("name") or "")
        if name == session.user.name:
            return self.shown(session, 422, problem="You cannot disable yourself.")
        if not self.people.disable_user(name, self.now(), by=f"console:{session.user.name}"):
            return self.shown(session, 404, problem=f"No enabled person is named {name}.")
        return self.shown(session, done=f"{name} disabled; their sessions have ended.")


def add(routes: APIRouter, guard: Guard, people: People, now: Callable[[], datetime]) -> None:
    pages = PeoplePage(people, now)
    routes.get("/people")(guard("admin")(pages.view))
    routes.post("/people")(guard("admin")(pages.add_person))
    routes.post("/people/disable")(guard("admin")(pages.disable))
