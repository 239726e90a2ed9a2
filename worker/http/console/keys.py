"""The admin's API keys page: the billing API's keys, making one (shown once) and
revoking one (refused from the next request). The book is `worker/users/keys.py`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from worker.http.console.guard import Guard
from worker.http.console.pages import page
from worker.users.keys import SCOPES, KeyProblem, Keys, parse_scopes
from worker.users.people import Session


class KeysPage:
    def __init__(self, keys: Keys, now: Callable[[], datetime]) -> None:
        self.keys, self.now = keys, now

    def shown(self, session: Session, status: int = 200, **said: Any) -> Response:
        return page("keys.html", status, user=session.user, csrf=session.csrf, keys=self.keys.api_keys(),
                    scopes=SCOPES, problem=said.get("problem"), done=said.get("done"), made=said.get("made"))

    async def view(self, request: Request, session: Session) -> Response:
        return self.shown(session)

    async def make(self, request: Request, session: Session) -> Response:
        form = await request.form()
        name = str(form.get("name") or "")
        try:
            key = self.keys.create_key(name, parse_scopes([str(s) for s in form.getlist("scopes")]), self.now(),
                                       by=f"console:{session.user.name}")
        except KeyProblem as problem:
            return self.shown(session, 422, problem=str(problem))
        return self.shown(session, made={"name": name, "key": key})

    async def revoke(self, request: Request, session: Session) -> Response:
        name = str((await request.form()).get("name") or "")
        if not self.keys.revoke_key(name, self.now(), by=f"console:{session.user.name}"):
            return self.shown(session, 404, problem=f"No live key is named {name}.")
        return self.shown(session, done=f"{name} revoked: requests with it are refused from now on.")


def add(routes: APIRouter, guard: Guard, keys: Keys, now: Callable[[], datetime]) -> None:
    pages = KeysPage(keys, now)
    routes.get("/keys")(guard("admin")(pages.view))
    routes.post("/keys")(guard("admin")(pages.make))
    routes.post("/keys/revoke")(guard("admin")(pages.revoke))
