"""RFC 9457 problem details: every error the billing API answers, in one shape —
`type`, `title`, `status`, `detail`, and `errors: [{"path", "message"}]` for validation.
Raised as `Problem` anywhere below a route; `install` turns it (and FastAPI's own
errors, and anything unexpected) into `application/problem+json`, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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


class Problem(Exception):
    def __init__(self, status: int, detail: str, errors: Sequence[Mapping[str, str]] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, list(errors), dict(headers or {})

    def response(self) -> JSONResponse:
        return problem_response(self.status, self.detail, self.errors, self.headers)


def problem_response(status: int, detail: str, errors: Sequence[Mapping[str, str]] = (),
                     headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
                            "detail": detail}
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=dict(headers or {}))


def split_error(text: str) -> dict[str, str]:
    """`debtor.email: expected ...` (as `dunning validate` says it) → {"path", "message"}."""
    path, _, message = text.partition(": ")
    return {"path": path, "message": message} if message else {"path": "(job)", "message": text}


def install(app: FastAPI) -> None:
    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, Problem)
        return error.response()

    async def on_http(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        if request.url.path.startswith("/console"):  # people get a page, not JSON
            return page("error.html", error.status_code, getattr(error, "headers", None),
                        title=HTTPStatus(error.status_code).phrase, message=_FOR_PEOPLE.get(error.status_code, ""))
        return problem_response(error.status_code, str(error.detail), headers=getattr(error, "headers", None))

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = [{"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()]
        return problem_response(422, "the request does not match the API's schema", errors)

    async def on_unexpected(request: Request, error: Exception) -> Response:
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        if request.url.path.startswith("/console"):
            return page("error.html", 500, title="Something went wrong",
                        message="An unexpected error; it is logged on the server.")
        return problem_response(500, "an unexpected error; it is logged on the server")

    async def on_disconnect(request: Request, error: Exception) -> Response:
        # The caller hung up before its request arrived whole: nobody to answer, nothing
        # wrong here. The empty response is never delivered; it only ends the request.
        logger.info("client disconnected during %s %s; nothing done", request.method, request.url.path)
        return Response(status_code=400)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)
