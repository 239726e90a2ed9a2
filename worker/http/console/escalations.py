"""The operator's Escalations page: the cases the worker handed to a person, oldest
first, each with its summary (debtor, amount, how late, why), whether the debtor may be
contacted now and by which channel (their local time, the contact window: `schedules.reach`),
and contact history with addresses masked as compliance sees them; "Show contact
details" unmasks one case's phone and email for the operator who must call (recorded,
as `unmasked`); take a case, close it with an outcome and a note (`Events.assign`,
`Events.close_case`: each a chained event; "promised" records the promise with its
date). Viewing the cases is recorded like any view of a person's record."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from babel.numbers import format_currency
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from schedules import Profiles
from schedules.reach import reach
from worker.contact_log import ContactLog
from worker.contact_log.kinds import AccessStatus, CaseOutcome, Kind
from worker.events import EventError, Events
from worker.http.console.guard import Guard
from worker.http.console.pages import page
from worker.jobs.book import JobBook
from worker.jobs.parse import parse_job
from worker.masking import mask
from worker.policy import profiles
from worker.settings import Settings
from worker.users.people import Session
from worker.wiring import Links

OUTCOMES = {CaseOutcome.PROMISED: "Reached, promised to pay", CaseOutcome.PAID: "Paid",
            CaseOutcome.DISPUTED: "Disputed", CaseOutcome.WRITTEN_OFF: "Written off", CaseOutcome.OTHER: "Other"}
PAGE = 50  # cases per page view, oldest first: each is shown whole, with its history
_SHOWN = (Kind.DELIVERY, Kind.INVOICE, Kind.SUPPRESSION, Kind.ACCOUNT, Kind.INBOUND, Kind.ESCALATION)


def summary(log: ContactLog, jobs: JobBook, known: Profiles, case: dict[str, Any], now: datetime,
            unmasked: bool = False) -> dict[str, Any]:
    """The case in a few words, from the invoice's last job as intake kept it, and whether
    the debtor may be reached now."""
    today = now.date()
    accepted = jobs.invoice_jobs(case["invoice_id"])
    row = jobs.job_row(accepted[-1]["job_id"]) if accepted else None
    try:
        job = json.loads(row["payload"]) if row and row.get("payload") else None
    except (TypeError, ValueError):  # sealed without the key, or erased
        job = None
    if not isinstance(job, dict):
        return {"known": False}
    invoice, debtor = job.get("invoice", {}), job.get("debtor", {})
    try:
        due = date.fromisoformat(str(invoice.get("due_date")))
        amount = format_currency(invoice.get("amount_due"), invoice.get("currency"), locale="en_US")
    except (TypeError, ValueError):
        return {"known": False}
    shown = (lambda field, value: value) if unmasked else mask
    return {"known": True, "name": debtor.get("name"), "company": debtor.get("company"), "amount": amount,
            "number": invoice.get("number"), "due": due, "late": (today - due).days,
            "phone": shown("phone", debtor.get("phone") or ""), "email": shown("email", debtor.get("email") or ""),
            "reach": _reach(log, known, job, now)}


def _reach(log: ContactLog, known: Profiles, data: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """The debtor's local time, the window and each channel now (None for a job that no
    longer parses, say under a profile since removed)."""
    parsed = parse_job(data, known, "the case's job").job
    if parsed is None or parsed.profile not in known:
        return None
    debtor = parsed.debtor
    facts = log.known(debtor.account_id, parsed.invoice.id, parsed.job_id, now,
                      tuple(a for a in (debtor.email, debtor.phone) if a)).facts
    found = reach(parsed, now, facts, known[parsed.profile])
    zone = found.zones[0] if found.zones else None
    return {"local": [f"{now.astimezone(z):%Y-%m-%d %H:%M %a} {z.key}" for z in found.zones],
            "open": found.open, "until": found.open_until.astimezone(zone).strftime("%H:%M")
            if found.open_until and zone else None,
            "opens": found.opens_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %a") if found.opens_at and zone else None,
            "closed": list(found.closed), "channels": found.channels}


def history(log: ContactLog, invoice_id: str) -> list[dict[str, Any]]:
    """What happened on the invoice, addresses masked."""
    return [{"at": row["occurred_at"], "kind": row["kind"], "status": row["status"], "channel": row.get("channel"),
             "stage": row.get("stage"), "to": mask("address", row["recipient"]) if row.get("recipient") else "",
             "by": (row.get("detail") or {}).get("by", "")}
            for row in log.history(invoice=invoice_id) if row["kind"] in _SHOWN]


class Escalations:
    """The operator's Escalations page: the open cases, oldest first, each with what the
    invoice's job says, whether the debtor may be reached now and its history; taking a
    case and closing it with its outcome."""

    def __init__(self, log: ContactLog, jobs: JobBook, links: Links, guard: Guard, settings: Settings,
                 now: Callable[[], datetime]) -> None:
        self.log, self.jobs, self.links, self.guard, self.settings, self.now = log, jobs, links, guard, settings, now

    def shown(self, session: Session, request: Request, status: int = 200, **said: Any) -> Response:
        moment = self.now()
        found = self.log.escalations()
        reveal = request.query_params.get("reveal", "") if request.method == "GET" else ""
        known = profiles(self.settings.profile_dir)
        cases = [{**case, "summary": summary(self.log, self.jobs, known, case, moment,
                                             unmasked=case["invoice_id"] == reveal),
                  "history": history(self.log, case["invoice_id"]), "revealed": case["invoice_id"] == reveal}
                 for case in found[:PAGE]]
        if cases:
            self.guard.note_access(session, request, AccessStatus.VIEWED, escalations=[c["invoice_id"] for c in cases])
        for case in cases:
            if case["revealed"]:  # an operator about to call: who saw the number, for which case
                self.guard.note_access(session, request, AccessStatus.UNMASKED, invoice=reveal,
                                       account=case["account_id"], why="escalation: contact details shown")
        return page("escalations.html", status, user=session.user, csrf=session.csrf, cases=cases, outcomes=OUTCOMES,
                    problem=said.get("problem"), done=said.get("done"), today=moment.date(),
                    more=max(0, len(found) - PAGE))

    async def view(self, request: Request, session: Session) -> Response:
        return await run_in_threadpool(self.shown, session, request)

    async def act(self, request: Request, session: Session) -> Response:
        form = await request.form()
        return await run_in_threadpool(self.acted, session, request, request.path_params["action"], form)

    def acted(self, session: Session, request: Request, action: str, form: FormData) -> Response:
        invoice, by = str(form.get("invoice") or "").strip()[:200], f"console:{session.user.name}"
        if invoice not in {c["invoice_id"] for c in self.log.escalations()}:
            return self.shown(session, request, 404, problem=f"No open escalation for {invoice}.")
        if action not in ("assign", "close"):
            return self.shown(session, request, 404, problem=f"{action!r} is not something this page does.")
        events = Events(self.log, self.links.agenda)
        try:
            if action == "assign":
                applied = events.assign(invoice, self.now(), by=by)
            else:
                until_text = str(form.get("until") or "").strip()
                try:
                    until = date.fromisoformat(until_text) if until_text else None
                except ValueError:
                    raise EventError(f"until: {until_text!r} is not a date (YYYY-MM-DD)") from None
                applied = events.close_case(invoice, str(form.get("outcome") or ""), self.now(), by=by,
                                            note=str(form.get("note") or ""), until=until)
        except EventError as problem:
            return self.shown(session, request, 422, problem=str(problem))
        return self.shown(session, request, done=applied.summary)


def add(routes: APIRouter, guard: Guard, log: ContactLog, jobs: JobBook, links: Links, settings: Settings,
        now: Callable[[], datetime]) -> None:
    pages = Escalations(log, jobs, links, guard, settings, now)
    routes.get("/escalations")(guard("operator")(pages.view))
    routes.post("/escalations/{action:str}")(guard("operator")(pages.act))
