"""Compliance's Verify page: the hash chains recomputed in the background (`verifier.py`),
its progress while it runs, the last result as the log recorded it, and the latest
signed checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from worker.contact_log import ContactLog
from worker.contact_log.checkpoints import Checkpoints
from worker.contact_log.note import Checkpoint
from worker.contact_log.queries import last_verification
from worker.http.console.guard import Guard, address_of
from worker.http.console.pages import HEADERS, page
from worker.http.console.verifier import Verifier
from worker.users.people import Session


class Verify:
    def __init__(self, log: ContactLog, checkpoints: Checkpoints, now: Callable[[], datetime]) -> None:
        self.log, self.checkpoints, self.verifier = log, checkpoints, Verifier(log, checkpoints, now)

    async def view(self, request: Request, session: Session) -> Response:
        note = self.checkpoints.latest()
        return page("verify.html", user=session.user, csrf=session.csrf, run=self.verifier.running(),
                    last=last_verification(self.log.engine), note=note,
                    checkpoint=Checkpoint.in_note(note) if note is not None else None)

    async def start(self, request: Request, session: Session) -> Response:
        self.verifier.start(session.user.name, address_of(request))
        return RedirectResponse("/console/verify", status_code=303, headers=HEADERS)


def add(routes: APIRouter, guard: Guard, log: ContactLog, checkpoints: Checkpoints,
        now: Callable[[], datetime]) -> None:
    pages = Verify(log, checkpoints, now)
    routes.get("/verify")(guard("compliance")(pages.view))
    routes.post("/verify")(guard("compliance")(pages.start))
