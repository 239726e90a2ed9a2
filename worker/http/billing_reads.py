"""The billing API's reads (scope `read`): a job as the log tells it (`GET /v1/jobs/{job_id}`)
and an invoice (`GET /v1/invoices/{id}`), with personal data masked, and the log's
latest signed checkpoint (`GET /v1/log/checkpoint`). Job ids contain `/`
(`INV-1/due_day`): clients percent-encode it (`INV-1%2Fdue_day`), the server takes the
rest of the path whole."""

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from worker.contact_log import ContactLog
from worker.contact_log.checkpoints import Checkpoints
from worker.contact_log.kinds import DeliveryStatus, Event, JobStatus, Kind
from worker.contact_log.queries import invoice_state
from worker.http.auth import requirer
from worker.http.openapi import problems
from worker.http.problems import Problem
from worker.jobs.book import JobBook
from worker.masking import mask
from worker.queue.agenda import Agenda
from worker.users.keys import ApiKey, Keys
from worker.wiring import Links

_DELIVERED = {"delivered", "read", "completed"}
_FAILED = {DeliveryStatus.FAILED, "undelivered", "canceled", "busy", "no-answer"}
_ACTIONS = {"defer": "deferred", "skip": "skipped", "escalate": "escalated"}


def job_state(decisions: list[dict[str, Any]], deliveries: Iterable[Mapping[str, Any]], dead: bool) -> str:
    """accepted, deferred, sent, delivered, skipped, escalated, failed or dead-lettered (and,
    from `job_view`, cancelled). An
    unknown outcome counts as sent: the provider may have it, and it is not sent again."""
    latest = [d["statuses"][-1]["status"] for d in deliveries if d["statuses"]]
    if any(s in _DELIVERED for s in latest):
        return "delivered"
    if any(s not in _FAILED and s not in (DeliveryStatus.CLAIMED, DeliveryStatus.RETRY) for s in latest):
        return "sent"
    if dead and not decisions:
        return "dead-lettered"  # rejected at intake
    if latest and decisions and decisions[-1]["action"] == "send":
        return "failed" if all(s in _FAILED for s in latest) else "accepted"
    if decisions:
        return _ACTIONS.get(decisions[-1]["action"], "accepted")
    return "dead-lettered" if dead else "accepted"


def job_view(log: ContactLog, jobs: JobBook, job_id: str) -> dict[str, Any] | None:
    row = jobs.job_row(job_id)
    dead = log.dead_letters(job_id)
    if row is None and not dead:
        return None
    decisions: list[dict[str, Any]] = []
    deliveries: dict[str, dict[str, Any]] = {}
    cancelled = False
    for event in log.history(job=job_id):
        at = event["occurred_at"].isoformat()
        cancelled = cancelled or (event["kind"] == Kind.JOB and event["status"] == JobStatus.CANCELLED)
        if event["kind"] == Kind.DECISION:
            detail = event["detail"] or {}
            decisions.append({"at": at, "action": event["status"], "reasons": detail.get("reasons", []),
                              "rules": detail.get("rules", []),
                              **{k: detail[k] for k in ("channel", "stage", "until", "window_end") if k in detail}})
        elif event["kind"] == Kind.DELIVERY and event["delivery_key"]:
            delivery = deliveries.setdefault(event["delivery_key"], {
                "channel": event["channel"], "recipient": mask("address", event["recipient"] or ""),
                "stage": event["stage"], "template": event["template"],
                "template_version": event["template_version"], "statuses": []})
            delivery["statuses"].append({"status": event["status"], "at": at, "provider": event["provider"],
                                         "error_code": event["error_code"]})
    state = job_state(decisions, deliveries.values(), bool(dead))
    return {"job_id": job_id, "state": "cancelled" if cancelled and state in ("accepted", "deferred") else state,
            "invoice_id": row["invoice_id"] if row else None, "account_id": row["account_id"] if row else None,
            "accepted_at": row["received_at"].isoformat() if row else None,
            "decisions": decisions, "deliveries": list(deliveries.values()),
            "rejected": [{"at": d["received_at"].isoformat(), "reason": d["reason"]} for d in dead]}


def invoice_view(log: ContactLog, jobs: JobBook, agenda: Agenda, invoice_id: str,
                 now: datetime) -> dict[str, Any] | None:
    accepted = jobs.invoice_jobs(invoice_id)
    if not accepted:
        return None
    history, contacts = list(log.history(invoice=invoice_id)), []
    state = invoice_state(history, now.date())
    for event in history:
        if event["kind"] == Kind.DELIVERY and event["status"] != DeliveryStatus.CLAIMED and event["channel"]:
            contacts.append({"at": event["occurred_at"].isoformat(), "job_id": event["job_id"],
                             "channel": event["channel"], "recipient": mask("address", event["recipient"] or ""),
                             "status": event["status"]})
    pending = [{"job_id": entry, "due": due.isoformat() if due else None, "paused": due is None}
               for entry, due in agenda.of_invoice(invoice_id)]
    return {"invoice_id": invoice_id, "account_id": accepted[0]["account_id"], "state": state,
            "pending": pending, "contacts": contacts, "jobs": [j["job_id"] for j in accepted]}


class JobView(BaseModel):
    job_id: str
    state: str = Field(description="accepted, deferred, sent, delivered, skipped, escalated, failed, "
                                   "dead-lettered or cancelled")
    invoice_id: str | None
    account_id: str | None
    accepted_at: str | None
    decisions: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    rejected: list[dict[str, Any]]


class PendingStep(BaseModel):
    job_id: str
    due: str | None
    paused: bool


class InvoiceView(BaseModel):
    invoice_id: str
    account_id: str
    state: str = Field(description="open, paid, written-off, disputed, promised or escalated")
    pending: list[PendingStep]
    contacts: list[dict[str, Any]]
    jobs: list[str]


class CancelAnswer(BaseModel):
    job_id: str
    cancelled: bool
    state: str


def router(log: ContactLog, keys: Keys, jobs: JobBook, checkpoints: Checkpoints, links: Links,
           now: Callable[[], datetime]) -> APIRouter:
    routes = APIRouter(prefix="/v1")
    Read = Annotated[ApiKey, Depends(requirer(keys, now)("read"))]  # noqa: N806

    @routes.get("/jobs/{job_id:path}", responses={200: {"model": JobView, "description": "The job as the log tells it"},
                                                  **problems(401, 403, 404, 500)})
    async def get_job(job_id: str, key: Read) -> JSONResponse:
        """A job: its state, the decisions with reasons and rule IDs, the deliveries with statuses."""
        found = await run_in_threadpool(job_view, log, jobs, job_id)
        if found is None:
            raise Problem(404, f"no job {job_id!r} was accepted or rejected here")
        return JSONResponse(found)

    @routes.get("/invoices/{invoice_id}", responses={
        200: {"model": InvoiceView, "description": "The invoice, its pending steps and contacts"},
        **problems(401, 403, 404, 500)})
    async def get_invoice(invoice_id: str, key: Read) -> JSONResponse:
        """An invoice: its state, pending steps with due times, contacts so far (masked)."""
        found = await run_in_threadpool(invoice_view, log, jobs, links.agenda, invoice_id, now())
        if found is None:
            raise Problem(404, f"no job for invoice {invoice_id!r} was accepted here")
        return JSONResponse(found)

    @routes.get("/log/checkpoint", response_class=PlainTextResponse, responses={
        200: {"content": {"text/plain": {}}, "description": "The latest signed checkpoint (a C2SP signed note)"},
        **problems(401, 403, 404, 500)})
    async def get_checkpoint(key: Read) -> PlainTextResponse:
        """The latest signed checkpoint of the contact log's chains: every chain's size and
        head, signed with the checkpoint key. Keep it; `dunning log verify --checkpoint`
        later proves the log still extends it."""
        note = await run_in_threadpool(checkpoints.latest)
        if note is None:
            raise Problem(404, "no checkpoint yet: the worker makes them when DUNNING_CHECKPOINT_KEY is set")
        return PlainTextResponse(note, headers={"Cache-Control": "no-store"})

    JobsWrite = Annotated[ApiKey, Depends(requirer(keys, now)("jobs:write"))]  # noqa: N806

    @routes.delete("/jobs/{job_id:path}", responses={
        200: {"model": CancelAnswer, "description": "Whether the job was still to come, and is cancelled now"},
        **problems(401, 403, 404, 500)})
    async def delete_job(job_id: str, key: JobsWrite) -> JSONResponse:
        """Cancel a pending job (its agenda entry, or its message on the queue); says whether it did."""
        found = await run_in_threadpool(cancel_job, log, jobs, links.agenda, job_id, now(),
                                        f"api:{key.name}")
        if found is None:
            raise Problem(404, f"no job {job_id!r} was accepted here")
        return JSONResponse(found)

    return routes


def cancel_job(log: ContactLog, jobs: JobBook, agenda: Agenda, job_id: str, now: datetime,
               by: str) -> dict[str, Any] | None:
    """A job still to come is cancelled: its agenda entry goes, and a `job cancelled` event
    tells the worker not to send it if its message is on the queue or in hand (the claim
    is refused when such an event is newer than what it decided on)."""
    view = job_view(log, jobs, job_id)
    if view is None or view["invoice_id"] is None:
        return None
    removed = agenda.cancel([job_id])
    pending = bool(removed) or view["state"] in ("accepted", "deferred")
    if pending:
        log.record(Event(Kind.JOB, JobStatus.CANCELLED, job_id=job_id, invoice_id=view["invoice_id"],
                         account_id=view["account_id"], detail={"by": by, "was": view["state"]}), now)
    return {"job_id": job_id, "cancelled": pending, "state": "cancelled" if pending else view["state"]}
