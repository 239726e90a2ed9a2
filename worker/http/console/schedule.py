"""The operator's Schedule page: the next 14 days from the agenda (each pending step
decided as the worker would decide it then: `worker/pipeline/forecast.py`), counts per
day × channel × profile with a chart drawn on the server (SVG, no script), an account's
or an invoice's pending steps in the debtor's local time and UTC, pause and resume
(recorded with who and why: `Events.pause`), and the forewarning email on demand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from schedules.spec import CHANNELS
from worker.contact_log import ContactLog
from worker.events import EventError, Events, normalize_address
from worker.http.console.charts import sends_per_day
from worker.http.console.guard import Guard
from worker.http.console.pages import page
from worker.pipeline import forecast
from worker.policy import profiles
from worker.settings import Settings
from worker.users.people import Session
from worker.wiring import Links


class Schedule:
    """The operator's Schedule page: the next days' plan, an account's or an invoice's
    pending steps, pausing and resuming them, and the morning's forewarning."""

    def __init__(self, log: ContactLog, links: Links, settings: Settings, now: Callable[[], datetime]) -> None:
        self.log, self.links, self.settings, self.now = log, links, settings, now

    def target_of(self, value: str) -> tuple[str, list[str]] | None:
        """("invoice", [id]) or ("account", its invoices), as intake received them."""
        if self.log.jobs_of(invoice=value, limit=1):
            return "invoice", [value]
        jobs = self.log.jobs_of(account=value)
        return ("account", [j["invoice_id"] for j in jobs]) if jobs else None

    def shown(self, session: Session, target: str = "", status: int = 200, **said: Any) -> Response:
        """The plan of the next days; or, for a `target`, its pending steps alone (an
        account's or invoice's few steps, not the whole agenda: fast to look up and to pause)."""
        moment, known = self.now(), profiles(self.settings.profile_dir)
        found = None if target else forecast.plan(self.links.agenda, self.log, known, moment)
        profiles_seen = sorted({profile for (_, _, profile) in found.counts}) if found else []
        rows = [{"day": day, "counts": {(c, p): found.counts.get((day, c, p), 0) for c in CHANNELS
                                        for p in profiles_seen}} for day in found.day_list()] if found else []
        pending, kind = None, None
        resolved = self.target_of(target) if target else None
        if target and resolved is None:
            said.setdefault("problem", f"No account or invoice {target} has reached dunning.")
            status = 404 if status == 200 else status
        elif resolved is not None:
            kind, invoices = resolved
            pending = forecast.pending_of(self.links.agenda, self.log, known, invoices, moment)
        return page("schedule.html", status, user=session.user, csrf=session.csrf, plan=found, rows=rows,
                    profiles=profiles_seen, channels=CHANNELS,
                    chart=sends_per_day(found.by_day_and_channel()) if found and found.counts else None,
                    target=target, kind=kind, pending=pending, problem=said.get("problem"), done=said.get("done"),
                    tomorrow=(moment + timedelta(days=1)).date())

    async def view(self, request: Request, session: Session) -> Response:
        target = request.query_params.get("target", "").strip()[:200]
        return await run_in_threadpool(self.shown, session, target)

    async def act(self, request: Request, session: Session) -> Response:
        action = request.path_params["action"]
        if action not in ("pause", "resume", "forewarn"):
            return page("error.html", 404, user=session.user, csrf=session.csrf, title="No such action",
                        message=f"{action!r} is not something the schedule does.")
        form = await request.form()
        if action == "forewarn":
            return await run_in_threadpool(self.forewarn, session, str(form.get("to") or ""))
        target = str(form.get("target") or "").strip()[:200]
        return await run_in_threadpool(self.pause, session, target, str(form.get("reason") or ""),
                                       action == "resume")

    def pause(self, session: Session, target: str, reason: str, resume: bool) -> Response:
        resolved = self.target_of(target)
        if resolved is None:
            return self.shown(session, target, 404, problem=f"No account or invoice {target} has reached dunning.")
        kind, _ = resolved
        name = f"account:{target}" if kind == "account" else target
        try:
            applied = Events(self.log, self.links.agenda).pause(name, self.now(), by=f"console:{session.user.name}",
                                                                reason=reason, resume=resume)
        except EventError as problem:
            return self.shown(session, target, 422, problem=str(problem))
        return self.shown(session, target, done=applied.summary + (f" ({applied.agenda})" if applied.agenda else ""))

    def forewarn(self, session: Session, to: str) -> Response:
        try:
            kind, address = normalize_address(to.strip())
            if kind != "email":
                raise EventError("an email address expected")
        except EventError as problem:
            return self.shown(session, status=422, problem=f"Send the forewarning to: {problem}")
        try:
            day = forecast.send_forewarning(self.links.channels(), self.log, profiles(self.settings.profile_dir),
                                            self.links.agenda, address, self.now())
        except forecast.ForewarnError as problem:
            return self.shown(session, status=503, problem=str(problem))
        return self.shown(session, done=f"The plan for {day} was e-mailed to {address}.")


def add(routes: APIRouter, guard: Guard, log: ContactLog, links: Links, settings: Settings,
        now: Callable[[], datetime]) -> None:
    pages = Schedule(log, links, settings, now)
    routes.get("/schedule")(guard("operator")(pages.view))
    routes.post("/schedule/{action:str}")(guard("operator")(pages.act))
