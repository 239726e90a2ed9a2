"""The console under /console: server-rendered pages for people — compliance reads the
record, operators work escalations, admins manage people and API keys. Sessions and
CSRF in `session.py`, rendering and security headers in `pages.py`; the people, their
sessions and sign-in throttling are `worker/users/`'s books, handed in by `wiring`.

Every page checks its role and answers 403 to another; no session → the sign-in page.
Signing in and out, failures, and every view of a person's record are `access` events
in the chained log, with who and from which address.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import tempfile
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, RedirectResponse, Response

from worker import wiring
from worker.contact_log import EXPORT_FIELDS, ContactLog, for_export, to_json_line
from worker.contact_log.kinds import AccessStatus
from worker.contact_log.queries import last_verification
from worker.http.console import editor, escalations, schedule, simulation
from worker.http.console.frames import FRAMES
from worker.http.console.guard import Guard, address_of
from worker.http.console.pages import HEADERS, LANDING, page
from worker.http.console.session import FORM_COOKIE, Cookies, same
from worker.http.console.verifier import Verifier
from worker.http.console.views import CHANNELS, KINDS, describe, zone_of
from worker.masking import mask
from worker.policy import profiles
from worker.queue.agenda import Agenda
from worker.records import access
from worker.records.erasure import Records, RecordsError
from worker.records.reproduce import reproduce
from worker.settings import Settings
from worker.users.keys import SCOPES, KeyProblem, parse_scopes
from worker.users.people import PersonProblem, Session
from worker.wiring import Books

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"console.css": "text/css", "editor.js": "text/javascript"}
logger = logging.getLogger("dunning.console")


_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


class _Answered(APIRoute):
    """Every console route answers: Redis away is a 503 page saying so (the pages that do
    not need it keep working), an unexpected error is logged and becomes a 500 page —
    here, rather than in the server's error middleware (which would also close the
    connection under a browser that keeps it alive). Both pages keep the person's
    navigation (`Guard` left their session on the request)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def answered(request: Request) -> Response:
            try:
                return await original(request)
            except (StarletteHTTPException, ClientDisconnect):
                raise
            except _REDIS_DOWN as error:
                logger.warning("the queue (Redis) is unavailable answering %s %s: %s", request.method,
                               request.url.path, type(error).__name__)
                return _error_page(request, 503, "The queue is unavailable",
                                   "This page needs the queue (Redis), which does not answer just now. "
                                   "Try again in a moment; the pages that read only the contact log "
                                   "keep working.", {"Retry-After": "5"})
            except Exception:
                logger.exception("unexpected error answering %s %s", request.method, request.url.path)
                return _error_page(request, 500, "Something went wrong",
                                   "An unexpected error; it is logged on the server.")
        return answered


def _error_page(request: Request, status: int, title: str, message: str,
                headers: dict[str, str] | None = None) -> Response:
    session = getattr(request.state, "session", None)
    return page("error.html", status, headers, title=title, message=message,
                user=session.user if session else None, csrf=session.csrf if session else "")


def _safe(text: str) -> str:
    """A subject as a file name: letters, digits, dots and dashes."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)[:80] or "export"


def router(log: ContactLog, books: Books, settings: Settings, now: Callable[[], datetime]) -> APIRouter:
    assert settings.secret_key  # `create_app` refuses to start without it
    cookies = Cookies(settings.secret_key, settings.public_url.startswith("https://"))
    routes = APIRouter(prefix="/console", include_in_schema=False, route_class=_Answered)

    people, keys = books.people, books.keys
    guard = Guard(log, people, cookies, now)
    current, note_access = guard.current, guard.note_access

    @routes.get("/static/{name:str}")
    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            raise StarletteHTTPException(404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=HEADERS)

    @routes.get("/frames/{token:str}")
    async def frame(request: Request) -> Response:
        return FRAMES.answer(request.path_params["token"])

    @routes.get("/")
    async def home(request: Request) -> Response:
        session = current(request)
        target = LANDING[session.user.role] if session else "/console/sign-in"
        return RedirectResponse(target, status_code=303, headers=HEADERS)

    @routes.get("/sign-in")
    async def sign_in_form(request: Request) -> Response:
        if current(request) is not None:
            return RedirectResponse("/console/", status_code=303, headers=HEADERS)
        token, new = cookies.form_token(request)
        response = page("sign_in.html", problem=None, username="", csrf=token)
        if new:
            cookies.set_form(response, token)
        return response

    @routes.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("username") or "")[:100], str(form.get("password") or "")
        expected = request.cookies.get(FORM_COOKIE)
        if not same(expected, form.get("csrf")):
            return page("error.html", 403, title="Form expired",
                        message="The sign-in form has expired: open it again.")
        address = address_of(request)
        wait = people.sign_in_wait(name, address, now())
        if wait > 0:
            return page("sign_in.html", 429, {"retry-after": str(math.ceil(wait))}, username=name,
                        csrf=expected or "",
                        problem=f"Too many failed sign-ins: try again in {math.ceil(wait)} seconds.")
        session = people.sign_in(name, password, address, now())
        if session is None:
            return page("sign_in.html", 401, username=name, csrf=expected or "",
                        problem="The username or the password is not right.")
        response = RedirectResponse(LANDING[session.user.role], status_code=303, headers=HEADERS)
        cookies.set_session(response, session.token)
        return response

    @routes.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        session = current(request)
        form = await request.form()
        if session is not None and same(session.csrf, form.get("csrf")):
            people.sign_out(session.token, now(), address_of(request))
        response = RedirectResponse("/console/sign-in", status_code=303, headers=HEADERS)
        cookies.end_session(response)
        return response

    @routes.get("/search")
    @guard("compliance")
    async def search(request: Request, session: Session) -> Response:
        query = request.query_params.get("q", "").strip()[:320]
        results = log.search(query, now().date()) if query else []
        if query:
            note_access(session, request, AccessStatus.VIEWED, search=query, found=len(results))
        recent = [] if query else log.recent_accounts()
        return page("search.html", user=session.user, csrf=session.csrf, query=query, results=results,
                    recent=recent)

    def timeline(request: Request, session: Session, about: str, value: str) -> Response:
        params = request.query_params
        kind = params.get("kind", "") if params.get("kind", "") in KINDS else ""
        channel = params.get("channel", "") if params.get("channel", "") in CHANNELS else ""
        unmasked = params.get("unmasked") == "1"
        before = int(params["before"]) if params.get("before", "").isdigit() else None
        problem, bounds = None, dict[str, datetime]()
        for name in ("since", "until"):
            if params.get(name):
                try:
                    bounds[name] = datetime.fromisoformat(params[name]).replace(tzinfo=UTC)
                except ValueError:
                    problem = f"{name}: {params[name]!r} is not a date (YYYY-MM-DD)"
        found = log.timeline(account=value if about == "account" else None,
                             invoice=value if about == "invoice" else None, kinds=(kind,) if kind else (),
                             channel=channel or None, since=bounds.get("since"), until=bounds.get("until"),
                             before=before)
        zone = zone_of(found.rows)
        note_access(session, request, AccessStatus.VIEWED, **{about: value})
        if unmasked:
            note_access(session, request, AccessStatus.UNMASKED, **{about: value})
        kept = {k: v for k, v in (("kind", kind), ("channel", channel), ("since", params.get("since", "")),
                                  ("until", params.get("until", "")), ("unmasked", "1" if unmasked else ""))
                if v}
        older = f"{request.url.path}?{urlencode({**kept, 'before': found.older})}" if found.older else None
        heading = f"Account {value}" if about == "account" else f"Invoice {value}"
        received = [{"job_id": job["job_id"], "invoice_id": job["invoice_id"],
                     "utc": job["received_at"].strftime("%Y-%m-%d %H:%M:%S"),
                     "local": job["received_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M %a"),
                     "queued": "yes" if job["queued_at"] else "not yet"}
                    for job in log.jobs_of(account=value if about == "account" else None,
                                           invoice=value if about == "invoice" else None)]
        exporting = {about: value, **{k: v for k, v in kept.items() if k in ("kind", "channel", "unmasked")}}
        exports = {"csv": "/console/export?" + urlencode({**exporting, "format": "csv"}),
                   "jsonl": "/console/export?" + urlencode({**exporting, "format": "jsonl"})}
        return page("timeline.html", user=session.user, csrf=session.csrf, heading=heading, path=request.url.path,
                    rows=[describe(row, zone, unmasked) for row in found.rows], zone=zone.key, kinds=KINDS,
                    channels=CHANNELS, kind=kind, channel=channel, since=params.get("since", ""),
                    until=params.get("until", ""), unmasked=unmasked, older=older, problem=problem,
                    exports=exports, received=received)

    @routes.get("/export")
    @guard("compliance")
    async def export(request: Request, session: Session) -> Response:
        params = request.query_params
        about = next((name for name in ("account", "invoice", "search") if params.get(name)), "")
        value = params.get(about, "")[:320] if about else ""
        if not value:
            return page("error.html", 400, user=session.user, csrf=session.csrf, title="Nothing to export",
                        message="Export from a search or from an account's or an invoice's page.")
        kind = params.get("kind", "") if params.get("kind", "") in KINDS else ""
        channel = params.get("channel", "") if params.get("channel", "") in CHANNELS else ""
        unmasked, as_csv = params.get("unmasked") == "1", params.get("format") != "jsonl"
        # A search exports the record of everything it found: each invoice, or account.
        targets = ([(f.account_id if f.invoice_id is None else None, f.invoice_id)
                    for f in log.search(value, now().date()) if f.address is None] if about == "search"
                   else [(value if about == "account" else None, value if about == "invoice" else None)])
        kept: dict[int, dict[str, Any]] = {}
        for account, invoice in targets:
            before = None
            while True:
                found = log.timeline(account=account, invoice=invoice, kinds=(kind,) if kind else (),
                                     channel=channel or None, before=before, limit=5000)
                kept.update((row["id"], row) for row in found.rows)
                if found.older is None:
                    break
                before = found.older
        rows = [kept[i] for i in sorted(kept, reverse=True)]
        note_access(session, request, AccessStatus.EXPORTED, **{about: value}, format="csv" if as_csv else "jsonl",
                    events=len(rows))
        if unmasked:
            note_access(session, request, AccessStatus.UNMASKED, **{about: value})
        items = [for_export({**row, "reasons": row["d_reasons"], "rules": row["d_rules"], "zones": row["d_zones"]},
                            unmasked) for row in reversed(rows)]
        name = f"dunning-{about}-{re.sub(r'[^A-Za-z0-9._-]', '_', value)[:80]}"
        if as_csv:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=EXPORT_FIELDS)
            writer.writeheader()
            for item in items:
                writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                                 for k, v in item.items()})
            body, media, suffix = text.getvalue(), "text/csv; charset=utf-8", "csv"
        else:
            body, media, suffix = "".join(to_json_line(item) + "\n" for item in items), "application/x-ndjson", "jsonl"
        return Response(body, media_type=media, headers={
            **HEADERS, "content-disposition": f'attachment; filename="{name}.{suffix}"'})

    @routes.get("/accounts/{account_id:path}")
    @guard("compliance")
    async def account_timeline(request: Request, session: Session) -> Response:
        return timeline(request, session, "account", request.path_params["account_id"])

    @routes.get("/invoices/{invoice_id:path}")
    @guard("compliance")
    async def invoice_timeline(request: Request, session: Session) -> Response:
        return timeline(request, session, "invoice", request.path_params["invoice_id"])

    @routes.get("/deliveries/{delivery_id:int}")
    @guard("compliance")
    async def delivery(request: Request, session: Session) -> Response:
        delivery_id = request.path_params["delivery_id"]
        record = log.delivery_record(delivery_id)
        if record is None:
            return page("error.html", 404, user=session.user, csrf=session.csrf, title="No such message",
                        message=f"No delivery has the number {delivery_id}.")
        note_access(session, request, AccessStatus.VIEWED, delivery=delivery_id)
        found = reproduce(record, settings)
        recipient = record.delivery["recipient"]
        return page("delivery.html", user=session.user, csrf=session.csrf, d=record.delivery,
                    recipient=mask("address", recipient), events=record.events, decision=record.decision,
                    reproduced=found, message=found.rendered)

    verifier = Verifier(log, now)

    @routes.get("/verify")
    @guard("compliance")
    async def verify_page(request: Request, session: Session) -> Response:
        return page("verify.html", user=session.user, csrf=session.csrf, run=verifier.running(),
                    last=last_verification(log.engine))

    @routes.post("/verify")
    @guard("compliance")
    async def verify(request: Request, session: Session) -> Response:
        verifier.start(session.user.name, address_of(request))
        return RedirectResponse("/console/verify", status_code=303, headers=HEADERS)

    @cache
    def records() -> Records:
        """Records requests, with the agenda and dramatiq's Redis (built on first use)."""
        return Records(log, Agenda(wiring.redis_for(settings)), wiring.broker(settings), profiles(settings.profile_dir),
                       settings.retention_years)

    def records_page(session: Session, status: int = 200, as_of: str = "", **said: Any) -> Response:
        preview = None
        if as_of:
            try:
                moment = datetime.combine(date.fromisoformat(as_of), time.max, UTC)
            except ValueError:
                said["problem"], status = f"As of: {as_of!r} is not a date (YYYY-MM-DD)", 422
            else:
                preview = [standing for standing, _ in records().purge(moment, now(), dry_run=True, by="console")]
        return page("records.html", status, user=session.user, csrf=session.csrf, holds=books.records.holds(),
                    erasures=books.records.erasure_requests(), as_of=as_of, preview=preview,
                    problem=said.get("problem"), done=said.get("done"))

    @routes.get("/records")
    @guard("compliance")
    async def records_view(request: Request, session: Session) -> Response:
        return await run_in_threadpool(records_page, session, 200, str(request.query_params.get("as_of") or ""))

    @routes.post("/records/{action:str}")
    @guard("compliance")
    async def records_act(request: Request, session: Session) -> Response:
        action = request.path_params["action"]
        form = await request.form()
        field = {"hold": "target", "release": "name", "erase": "account", "export": "subject"}.get(action)
        if field is None:
            raise StarletteHTTPException(404)
        value, reason = str(form.get(field) or "").strip(), str(form.get("reason") or "")
        by = f"console:{session.user.name}"
        if action == "erase" and form.get("confirm") != "yes":  # the page asks; a form without it is refused
            return records_page(session, 422, problem="Not erased: confirm that the erasure cannot be undone.")
        try:
            if action == "export":
                return await run_in_threadpool(export_records, value, str(form.get("format") or "html"), by)
            act = {"hold": records().hold, "release": records().release, "erase": records().erase}[action]
            answer = await run_in_threadpool(act, value, reason, now(), by=by)
        except (RecordsError, access.NothingHeld) as problem:
            return records_page(session, 422, problem=str(problem))
        except _REDIS_DOWN:
            return records_page(session, 503, problem="Erased in the contact log, but Redis was unavailable: erase "
                                                      "again to remove its scheduled jobs.")
        return (records_page(session, done=answer.message) if answer.done
                else records_page(session, 409, problem=answer.message))

    def export_records(subject: str, format_: str, by: str) -> Response:
        with tempfile.TemporaryDirectory(prefix="dunning-export-") as folder:
            done = access.export(log, subject, Path(folder), now(), settings, by=by)
            name = "report.html" if format_ != "json" else "records.json"
            body = (done.directory / name).read_bytes()
        kind = "text/html; charset=utf-8" if name.endswith(".html") else "application/json"
        return Response(body, media_type=kind, headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="records-{_safe(subject)}.{name.rsplit(".")[1]}"'})

    def people_page(session: Session, status: int = 200, **said: Any) -> Response:
        return page("people.html", status, user=session.user, csrf=session.csrf, people=people.people(),
                    problem=said.get("problem"), done=said.get("done"))

    @routes.get("/people")
    @guard("admin")
    async def people_view(request: Request, session: Session) -> Response:
        return people_page(session)

    @routes.post("/people")
    @guard("admin")
    async def add_person(request: Request, session: Session) -> Response:
        form = await request.form()
        try:
            added = people.add_user(str(form.get("name") or ""), str(form.get("role") or ""),
                                 str(form.get("password") or ""), now(), by=f"console:{session.user.name}")
        except PersonProblem as problem:
            return people_page(session, 422, problem=str(problem))
        return people_page(session, done=f"{added.name} added ({added.role}).")

    @routes.post("/people/disable")
    @guard("admin")
    async def disable_person(request: Request, session: Session) -> Response:
        name = str((await request.form()).get("name") or "")
        if name == session.user.name:
            return people_page(session, 422, problem="You cannot disable yourself.")
        if not people.disable_user(name, now(), by=f"console:{session.user.name}"):
            return people_page(session, 404, problem=f"No enabled person is named {name}.")
        return people_page(session, done=f"{name} disabled; their sessions have ended.")

    def keys_page(session: Session, status: int = 200, **said: Any) -> Response:
        return page("keys.html", status, user=session.user, csrf=session.csrf, keys=keys.api_keys(), scopes=SCOPES,
                    problem=said.get("problem"), done=said.get("done"), made=said.get("made"))

    @routes.get("/keys")
    @guard("admin")
    async def keys_view(request: Request, session: Session) -> Response:
        return keys_page(session)

    @routes.post("/keys")
    @guard("admin")
    async def make_key(request: Request, session: Session) -> Response:
        form = await request.form()
        name = str(form.get("name") or "")
        try:
            key = keys.create_key(name, parse_scopes([str(s) for s in form.getlist("scopes")]), now(),
                                 by=f"console:{session.user.name}")
        except KeyProblem as problem:
            return keys_page(session, 422, problem=str(problem))
        return keys_page(session, made={"name": name, "key": key})

    @routes.post("/keys/revoke")
    @guard("admin")
    async def revoke_key(request: Request, session: Session) -> Response:
        name = str((await request.form()).get("name") or "")
        if not keys.revoke_key(name, now(), by=f"console:{session.user.name}"):
            return keys_page(session, 404, problem=f"No live key is named {name}.")
        return keys_page(session, done=f"{name} revoked: requests with it are refused from now on.")

    editor.add(routes, guard, books.library, settings, now)
    schedule.add(routes, guard, log, settings, now)
    escalations.add(routes, guard, log, books.jobs, settings, now)
    simulation.add(routes, guard, books.library, settings, now)

    @routes.get("/{rest:path}")  # last: a page that does not exist, with the person's navigation
    async def missing(request: Request) -> Response:
        session = current(request)
        return page("error.html", 404, user=session.user if session else None, csrf=session.csrf if session else "",
                    title="Not Found", message="There is no such page.")
    return routes

