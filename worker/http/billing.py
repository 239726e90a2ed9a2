"""The billing API, version 1 (`/v1`): what billing systems call over HTTP instead of
running the CLI on the worker's host. Jobs and cadences in (`POST /v1/jobs`,
`POST /v1/invoices`) go through the same intake as `dunning enqueue` and
`dunning register` (`worker.jobs.intake.submit`): the same validation and wording,
dead letters, duplicates and outage answers."""

import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from schedules import Profiles
from worker.contact_log import ContactLog
from worker.events import Applied, EventError, Events, UnknownInvoice
from worker.http.auth import requirer
from worker.http.idempotency import Answers, once
from worker.http.openapi import JOBS_BODY, body, model_ref, problems
from worker.http.problems import Problem, split_error
from worker.jobs.book import JobBook
from worker.jobs.intake import as_registration, submit
from worker.jobs.parse import Parsed, loads, parse_job
from worker.policy import profiles
from worker.users.keys import ApiKey, Keys
from worker.wiring import Links

WRITE_PROBLEMS = problems(400, 401, 403, 409, 413, 415, 422, 500, 503)
EVENT_PROBLEMS = problems(400, 401, 403, 409, 413, 415, 422, 500)
INVOICE_EVENT_PROBLEMS = problems(400, 401, 403, 404, 409, 413, 415, 422, 500)  # 404: no job for the invoice
MAX_JOBS = 1000
MAX_BODY = 5 * 1024 * 1024  # bytes: 1,000 jobs of ~1 KB, with room to spare
RETRY_AFTER = "5"  # seconds, when Redis or the database is away


async def read_body(request: Request) -> bytes:
    """The body: `application/json` (415), at most `MAX_BODY` (413, on the declared length
    before anything is read)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Problem(415, f"Content-Type: application/json expected, got {media or 'none'}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise Problem(413, f"the body has {int(declared)} bytes; at most {MAX_BODY} are accepted")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Problem(413, f"the body is over {MAX_BODY} bytes")
    return bytes(body)


def json_of(body: bytes) -> Any:
    """The body as JSON: UTF-8 (400), JSON without NaN or Infinity (400)."""
    try:
        return loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8") from None
    except ValueError as error:
        raise Problem(400, f"the body is not JSON: {error}") from None


def job_items(data: Any) -> list[Any]:
    """One job, or `{"jobs": [...]}` with at most `MAX_JOBS` (413 beyond)."""
    if not _is_batch(data):
        return [data]
    items = data["jobs"]
    if not isinstance(items, list):
        raise Problem(422, "jobs: an array of jobs expected", [{"path": "jobs", "message": "an array expected"}])
    if len(items) > MAX_JOBS:
        raise Problem(413, f"{len(items)} jobs; at most {MAX_JOBS} per request")
    return items


def _is_batch(data: Any) -> bool:
    return isinstance(data, dict) and set(data) == {"jobs"}


async def take(body: bytes, register: bool, jobs: JobBook, links: Links, known: Profiles,
               now: datetime) -> JSONResponse:
    """Jobs (or, with `register`, invoices to register) through intake: what was accepted,
    duplicates, and what was rejected — a single job's rejection is its 422."""
    data = json_of(body)
    items = job_items(data)
    parsed: list[Parsed] = [parse_job(item, known, f"jobs[{n}]") for n, item in enumerate(items)]
    if register:
        parsed = [as_registration(item, known) for item in parsed]
    index = {id(item): n for n, item in enumerate(parsed)}
    result = await run_in_threadpool(submit, parsed, jobs, known, links.broker, now)
    if result.unavailable:
        raise Problem(503, f"{result.reason}: {len(result.unavailable)} job(s) not accepted; send the same "
                           "request again (what was accepted comes back as duplicates)",
                      headers={"Retry-After": RETRY_AFTER})
    rejected = [{"index": index[id(item)], "job_id": item.job_id,
                 "errors": [split_error(e) for e in item.errors]} for item in result.rejected]
    if rejected and not _is_batch(data):  # one job, not a batch: its answer is its problems
        [one] = result.rejected
        raise Problem(422, f"the job was rejected and kept as a dead letter: {'; '.join(one.errors)}",
                      [split_error(e) for e in one.errors])
    return JSONResponse(status_code=202, content={
        "accepted": result.accepted_ids, "duplicates": result.duplicates, "rejected": rejected})


async def applied(body: bytes, shape: type[BaseModel], act: Callable[[Events, Any, datetime, str], Applied],
                  events: Events, by: str, now: datetime) -> Response:
    """A billing event (a payment, a dispute, ...) applied: what it changed, or why not."""
    given = fields_of(shape, json_of(body))
    try:
        done = await run_in_threadpool(act, events, given, now, by)
    except UnknownInvoice as error:
        raise Problem(404, str(error)) from None
    except EventError as error:
        raise Problem(422, str(error), [split_error(str(error))]) from None
    return JSONResponse({"summary": done.summary, "changed": done.changed, **done.changes})


def router(log: ContactLog, keys: Keys, jobs: JobBook, answers: Answers, links: Links,
           profile_dir: Path | None, now: Callable[[], datetime]) -> APIRouter:
    routes = APIRouter(prefix="/v1")
    require = requirer(keys, now)
    JobsWrite = Annotated[ApiKey, Depends(require("jobs:write"))]  # noqa: N806 (a type, built per app)

    async def intake(body: bytes, register: bool) -> JSONResponse:
        return await take(body, register, jobs, links, profiles(profile_dir), now())

    @routes.post("/jobs", status_code=202, openapi_extra=JOBS_BODY, responses={
        202: {"model": IntakeAnswer, "description": "Taken: accepted, duplicates, rejected (kept as dead letters)"},
        **WRITE_PROBLEMS})
    async def post_jobs(request: Request, key: JobsWrite) -> Response:
        """Queue reminder jobs: one job, or {"jobs": [...]} (at most 1,000)."""
        body = await read_body(request)
        return await once(request, key, body, answers, now, lambda: intake(body, False))

    @routes.post("/invoices", status_code=202, openapi_extra=JOBS_BODY, responses={
        202: {"model": IntakeAnswer, "description": "Registered: every step of the ladder planned"},
        **WRITE_PROBLEMS})
    async def post_invoices(request: Request, key: JobsWrite) -> Response:
        """Register invoices: every step of the profile's ladder is planned (as `dunning register`)."""
        body = await read_body(request)
        return await once(request, key, body, answers, now, lambda: intake(body, True))

    EventsWrite = Annotated[ApiKey, Depends(require("events:write"))]  # noqa: N806

    async def event(request: Request, key: ApiKey, shape: type[BaseModel],
                    act: Callable[[Events, Any, datetime, str], Applied]) -> Response:
        body = await read_body(request)
        return await once(request, key, body, answers, now, lambda: applied(
            body, shape, act, Events(log, links.agenda), f"api:{key.name}", now()))

    @routes.post("/invoices/{invoice_id}/payment", openapi_extra=body(model_ref(PaymentBody)),
                 responses={200: {"model": EventAnswer, "description": "What it changed"}, **INVOICE_EVENT_PROBLEMS})
    async def payment(invoice_id: str, request: Request, key: EventsWrite) -> Response:
        """The invoice was paid: in full (no amount: its pending steps are cancelled) or in part."""
        return await event(request, key, PaymentBody, lambda events, body, at, by: events.paid(
            invoice_id, at, by=by, amount=body.amount))

    @routes.post("/invoices/{invoice_id}/write-off", openapi_extra=body(model_ref(NoteBody)),
                 responses={200: {"model": EventAnswer, "description": "What it changed"}, **INVOICE_EVENT_PROBLEMS})
    async def write_off(invoice_id: str, request: Request, key: EventsWrite) -> Response:
        """The invoice was written off: its cadence ends."""
        return await event(request, key, NoteBody, lambda events, body, at, by: events.write_off(
            invoice_id, at, by=by, note=body.note))

    @routes.post("/invoices/{invoice_id}/dispute", openapi_extra=body(model_ref(DisputeBody)),
                 responses={200: {"model": EventAnswer, "description": "What it changed"}, **INVOICE_EVENT_PROBLEMS})
    async def dispute(invoice_id: str, request: Request, key: EventsWrite) -> Response:
        """The debtor disputes the invoice (its steps pause), or the dispute is resolved (they resume)."""
        return await event(request, key, DisputeBody, lambda events, body, at, by: events.dispute(
            invoice_id, at, by=by, resolved=body.resolved, note=body.note))

    @routes.post("/invoices/{invoice_id}/promise", openapi_extra=body(model_ref(PromiseBody)),
                 responses={200: {"model": EventAnswer, "description": "What it changed"}, **INVOICE_EVENT_PROBLEMS})
    async def promise(invoice_id: str, request: Request, key: EventsWrite) -> Response:
        """The debtor promised to pay by a date: steps before the day after move past it."""
        return await event(request, key, PromiseBody, lambda events, body, at, by: events.promise(
            invoice_id, body.until, at, by=by))

    @routes.post("/opt-outs", openapi_extra=body(model_ref(OptOutBody)),
                 responses={200: {"model": EventAnswer, "description": "What it changed"}, **EVENT_PROBLEMS})
    async def opt_out(request: Request, key: EventsWrite) -> Response:
        """Stop messages to an address, or to an account through one channel."""
        def act(events: Events, body: Any, at: datetime, by: str) -> Applied:
            if body.address is not None and body.account_id is None and body.channel is None:
                return events.optout(body.address, at, by=by)
            if body.address is None and body.account_id and body.channel:
                return events.optout_channel(body.account_id, body.channel, at, by=by)
            raise EventError("address: give an address, or an account_id and a channel")

        return await event(request, key, OptOutBody, act)

    @routes.post("/accounts/{account_id}/cease", openapi_extra=body(model_ref(NoteBody)),
                 responses={200: {"model": EventAnswer, "description": "What it changed"}, **EVENT_PROBLEMS})
    async def cease(account_id: str, request: Request, key: EventsWrite) -> Response:
        """A cease-communication request (or attorney representation) for an account."""
        return await event(request, key, NoteBody, lambda events, body, at, by: events.cease(
            account_id, at, by=by, note=body.note))

    return routes


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(BaseModel):
    path: str
    message: str


class Rejected(BaseModel):
    index: int
    job_id: str | None
    errors: list[FieldError]


class IntakeAnswer(BaseModel):
    """202: what intake did with each job."""

    accepted: list[str]
    duplicates: list[str]
    rejected: list[Rejected]


class EventAnswer(BaseModel):
    """200: what the event changed (only the lists that apply are given)."""

    summary: str
    changed: bool
    cancelled: list[str] | None = None
    paused: list[str] | None = None
    resumed: list[str] | None = None
    moved: list[str] | None = None
    suppressed: list[str] | None = None


class NoteBody(_Body):
    note: str | None = Field(None, max_length=2000)


class PaymentBody(_Body):
    amount: str | None = Field(None, description="A part payment, as a decimal string (1200.00); none: paid in full")


class DisputeBody(NoteBody):
    resolved: bool = False


class PromiseBody(_Body):
    until: date


class OptOutBody(_Body):
    address: str | None = Field(None, description="An email address or an E.164 phone number")
    account_id: str | None = None
    channel: str | None = Field(None, description="With account_id: email, sms or voice")


# What each event field takes, in the words the errors use ("`amount` must be ...").
EXPECTED = {"amount": 'a decimal string like "120.00"', "until": 'a date like "2026-12-24" (YYYY-MM-DD)',
            "resolved": "true or false", "note": "text of at most 2,000 characters",
            "address": 'an email address or an E.164 phone number like "+8613800138000"',
            "account_id": "the account's id, as a string", "channel": '"email", "sms" or "voice"'}


def fields_of(shape: type[BaseModel], data: Any) -> Any:
    """The body as `shape`, or 422 naming each field that is wrong and what it takes."""
    try:
        return shape.model_validate(data)
    except ValidationError as error:
        found = [_field_error(shape, e) for e in error.errors()]
        raise Problem(422, "; ".join(f"{e['path']} {e['message']}" for e in found), found) from None


def _field_error(shape: type[BaseModel], error: Any) -> dict[str, str]:
    path = ".".join(str(p) for p in error["loc"])
    if not path:
        return {"path": "(body)", "message": "must be a JSON object"}
    if error["type"] == "extra_forbidden":
        takes = ", ".join(shape.model_fields) or "nothing"
        return {"path": path, "message": f"is not a field of this request (it takes: {takes})"}
    if error["type"] == "missing":
        return {"path": path, "message": f"is required: {EXPECTED.get(path, 'a value')}"}
    given = error.get("input")
    shown = json.dumps(given, ensure_ascii=False)[:60] if given is not None else "null"
    return {"path": path, "message": f"must be {EXPECTED.get(path, error['msg'].lower())}, got {shown}"}
