"""Compliance's Records page: legal holds, erasure requests (done or refused, and why),
a purge's preview as of a date, and a person's subject-access export. The rules are
`worker/records/`'s, the same as `dunning records`; erasing reaches Redis too (the
agenda, dramatiq's dead letters), so only this page's actions need it."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from functools import cached_property
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from worker.contact_log import ContactLog
from worker.http.console.guard import Guard
from worker.http.console.pages import HEADERS, REDIS_DOWN, page
from worker.jobs.book import JobBook
from worker.policy import profiles
from worker.records import access
from worker.records.book import RecordBook
from worker.records.erasure import Records, RecordsError
from worker.settings import Settings
from worker.users.people import Session
from worker.wiring import Links

_FIELDS = {"hold": "target", "release": "name", "erase": "account", "export": "subject"}  # action → its form field


def _safe(text: str) -> str:
    """A subject as a file name: letters, digits, dots and dashes."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)[:80] or "export"


class RecordsPage:
    def __init__(self, log: ContactLog, book: RecordBook, jobs: JobBook, links: Links, settings: Settings,
                 now: Callable[[], datetime]) -> None:
        self.log, self.book, self.jobs, self.links, self.settings, self.now = log, book, jobs, links, settings, now

    @cached_property
    def records(self) -> Records:
        """Records requests, with the agenda and dramatiq's Redis (built on first use)."""
        return Records(self.log, self.book, self.jobs, self.links.agenda, self.links.broker,
                       profiles(self.settings.profile_dir), self.settings.retention_years)

    def shown(self, session: Session, status: int = 200, as_of: str = "", **said: Any) -> Response:
        preview = None
        if as_of:
            try:
                moment = datetime.combine(date.fromisoformat(as_of), time.max, UTC)
            except ValueError:
                said["problem"], status = f"As of: {as_of!r} is not a date (YYYY-MM-DD)", 422
            else:
                preview = [standing for standing, _ in self.records.purge(moment, self.now(), dry_run=True,
                                                                           by="console")]
        return page("records.html", status, user=session.user, csrf=session.csrf, holds=self.book.holds(),
                    erasures=self.book.erasure_requests(), as_of=as_of, preview=preview,
                    problem=said.get("problem"), done=said.get("done"))

    async def view(self, request: Request, session: Session) -> Response:
        return await run_in_threadpool(self.shown, session, 200, str(request.query_params.get("as_of") or ""))

    async def act(self, request: Request, session: Session) -> Response:
        action = request.path_params["action"]
        form = await request.form()
        field = _FIELDS.get(action)
        if field is None:
            raise StarletteHTTPException(404)
        value, reason = str(form.get(field) or "").strip(), str(form.get("reason") or "")
        by = f"console:{session.user.name}"
        if action == "erase" and form.get("confirm") != "yes":  # the page asks; a form without it is refused
            return self.shown(session, 422, problem="Not erased: confirm that the erasure cannot be undone.")
        try:
            if action == "export":
                return await run_in_threadpool(self.export, value, str(form.get("format") or "html"), by)
            act = {"hold": self.records.hold, "release": self.records.release, "erase": self.records.erase}[action]
            answer = await run_in_threadpool(act, value, reason, self.now(), by=by)
        except (RecordsError, access.NothingHeld) as problem:
            return self.shown(session, 422, problem=str(problem))
        except REDIS_DOWN:
            return self.shown(session, 503, problem="Erased in the contact log, but Redis was unavailable: erase "
                                                    "again to remove its scheduled jobs.")
        return (self.shown(session, done=answer.message) if answer.done
                else self.shown(session, 409, problem=answer.message))

    def export(self, subject: str, format_: str, by: str) -> Response:
        with tempfile.TemporaryDirectory(prefix="dunning-export-") as folder:
            done = access.export(self.log, self.book, self.jobs, subject, Path(folder), self.now(), self.settings,
                                 by=by)
            name = "report.html" if format_ != "json" else "records.json"
            body = (done.directory / name).read_bytes()
        kind = "text/html; charset=utf-8" if name.endswith(".html") else "application/json"
        return Response(body, media_type=kind, headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="records-{_safe(subject)}.{name.rsplit(".")[1]}"'})


def add(routes: APIRouter, guard: Guard, log: ContactLog, book: RecordBook, jobs: JobBook, links: Links,
        settings: Settings, now: Callable[[], datetime]) -> None:
    pages = RecordsPage(log, book, jobs, links, settings, now)
    routes.get("/records")(guard("compliance")(pages.view))
    routes.post("/records/{action:str}")(guard("compliance")(pages.act))
