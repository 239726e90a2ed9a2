"""RFC 9457 problem details: every error the billing API answers, in one shape —
`type`, `title`, `status`, `detail`, and `errors: [{"path", "message"}]` for validation.
Raised as `Problem` anywhere below a route; `install` turns it (and FastAPI's own
errors, and anything unexpected) into `application/problem+json`, never a traceback.

Each `type` is a page this server serves (`/v1/problems/<name>`, under
`DUNNING_PUBLIC_URL`): what the problem means and what the caller can do about it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from worker.http.console.pages import page

logger = logging.getLogger("dunning.api")
_FOR_PEOPLE = {404: "There is no such page.", 405: "This page cannot be used that way."}
MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    """One kind of problem, by the status it is answered with: its page's name and text."""

    name: str
    title: str
    what: str  # what it means and what to do, for the engineer reading the page


_TYPES = {
    400: ProblemType("bad-request", "The body cannot be read",
                     "The body is not UTF-8, or not JSON (NaN and Infinity are not JSON). Fix the body; sending "
                     "it again unchanged gives the same answer."),
    401: ProblemType("unauthorized", "An API key is needed",
                     "Send `Authorization: Bearer KEY` with a key made by `dunning keys create`. A revoked or "
                     "unknown key is refused the same way."),
    403: ProblemType("forbidden", "The key lacks a scope",
                     "The key is valid but lacks the scope this request needs (`jobs:write`, `events:write` or "
                     "`read`); `detail` names it. Make a key with that scope."),
    404: ProblemType("not-found", "No such thing here",
                     "The job, invoice or page named in the path is not known to this contact log. An event for "
                     "an invoice is accepted once a job for that invoice has been sent (`POST /v1/jobs` or "
                     "`POST /v1/invoices`): an event for an invoice never seen is most likely a typo."),
    405: ProblemType("method-not-allowed", "Not that method", "The path exists, but not with this HTTP method."),
    409: ProblemType("in-progress", "The first request is still running",
                     "A request with the same `Idempotency-Key` is still being answered. Wait for `Retry-After` "
                     "seconds and send it again: you will get the first request's answer."),
    413: ProblemType("too-large", "Too much at once",
                     "The body is over 5 MB, or holds more than 1,000 jobs. Split it into several requests."),
    415: ProblemType("unsupported-media-type", "JSON expected", "Send the body with `Content-Type: application/json`."),
    422: ProblemType("invalid", "Not valid",
                     "The request was read but is not valid. `errors` lists each problem as "
                     "`{\"path\", \"message\"}`: the field (e.g. `debtor.email`, `amount`) and what was "
                     "expected. A rejected job is kept as a dead letter with its reasons; send it again, "
                     "corrected, under the same `job_id`. An `Idempotency-Key` used before with another body is "
                     "also this problem: use a new key for a new request."),
    500: ProblemType("server-error", "Something went wrong here",
                     "An unexpected error, logged on the server with its cause. Nothing half-done is kept: "
                     "sending the same request again (with the same `Idempotency-Key`) is safe."),
    503: ProblemType("unavailable", "Try again shortly",
                     "The queue (Redis) or the database is unavailable. Nothing of the jobs that were not "
                     "accepted was kept; send the same request again after `Retry-After` seconds (what was "
                     "accepted comes back as duplicates)."),
}
TYPES = _TYPES
_OTHER = ProblemType("other", "Other problems", "Any other status: `title` is the HTTP reason phrase.")


def type_of(status: int) -> ProblemType:
    return TYPES.get(status, _OTHER)


class Problem(Exception):
    def __init__(self, status: int, detail: str, errors: Sequence[Mapping[str, str]] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, list(errors), dict(headers or {})

    def response(self, request: Request) -> JSONResponse:
        return problem_response(request, self.status, self.detail, self.errors, self.headers)


def problem_response(request: Request, status: int, detail: str, errors: Sequence[Mapping[str, str]] = (),
                     headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The problem as JSON; its `type` is this server's page for it, under the public URL
    (`install` keeps it on the app), else the address the request came to."""
    base = getattr(request.app.state, "public_url", None) or str(request.base_url).rstrip("/")
    body: dict[str, Any] = {"type": f"{base}/v1/problems/{type_of(status).name}",
                            "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=dict(headers or {}))


def split_error(text: str) -> dict[str, str]:
    """`debtor.email: expected ...` (as `dunning validate` says it) → {"path", "message"}."""
    path, _, message = text.partition(": ")
    return {"path": path, "message": message} if message else {"path": "(job)", "message": text}


def install(app: FastAPI, public_url: str) -> None:
    app.state.public_url = public_url

    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, Problem)
        return error.response(request)

    async def on_http(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        if request.url.path.startswith("/console"):  # people get a page, not JSON
            return page("error.html", error.status_code, getattr(error, "headers", None),
                        title=HTTPStatus(error.status_code).phrase, message=_FOR_PEOPLE.get(error.status_code, ""))
        return problem_response(request, error.status_code, str(error.detail),
                                headers=getattr(error, "headers", None))

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = [{"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()]
        return problem_response(request, 422, "the request does not match the API's schema", errors)

    async def on_unexpected(request: Request, error: Exception) -> Response:
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        if request.url.path.startswith("/console"):
            return page("error.html", 500, title="Something went wrong",
                        message="An unexpected error; it is logged on the server.")
        return problem_response(request, 500, "an unexpected error; it is logged on the server")

    async def on_disconnect(request: Request, error: Exception) -> Response:
        # The caller hung up before its request arrived whole: nobody to answer, nothing
        # wrong here. The empty response is never delivered; it only ends the request.
        logger.info("client disconnected during %s %s; nothing done", request.method, request.url.path)
        return Response(status_code=400)

    @app.get("/v1/problems/{name}", include_in_schema=False)
    async def described(name: str) -> Response:
        """The page a problem's `type` names (no key needed)."""
        found = next((t for t in [*TYPES.values(), _OTHER] if t.name == name), None)
        if found is None:
            raise StarletteHTTPException(404, f"no problem type {name!r}")
        statuses = [status for status, t in TYPES.items() if t is found]
        return page("problem_type.html", title=found.title, problem=found, statuses=statuses,
                    others=[t for t in TYPES.values() if t is not found])

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)
