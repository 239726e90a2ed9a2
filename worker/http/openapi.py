"""`GET /v1/openapi.json`: the billing API described for the tools integrators use
(client generators, schemathesis). Built from the routes under `/v1`, with what FastAPI
cannot see: the job contract's JSON Schema for the bodies read by hand, the problem
responses each route gives, and the bearer key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from worker.jobs.contract import Job
from worker.webhooks.payload import SUMMARIES, WebhookMessage

REF = "#/components/schemas/{model}"
_PROBLEM_TITLES = {400: "The body is not UTF-8 JSON", 401: "No key, or an unknown or revoked one",
                   403: "The key lacks the route's scope", 404: "Not found",
                   409: "The same Idempotency-Key is in flight",
                   413: "Too large: over 5 MB or 1,000 jobs", 415: "Not application/json",
                   422: "A field is wrong (named in `errors`)", 500: "An unexpected error (logged on the server)",
                   503: "Redis or the database is away: send the same request again"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "title", "status", "detail"],
    "properties": {"type": {"type": "string", "format": "uri",
                            "description": "A page served here that explains the problem"},
                   "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"},
                   "errors": {"type": "array", "items": {"type": "object", "required": ["path", "message"],
                                                         "properties": {"path": {"type": "string"},
                                                                        "message": {"type": "string"}}}}}}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The problem responses a route gives, for its `responses=`."""
    return {code: {"description": _PROBLEM_TITLES[code],
                   "content": {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}}
            for code in codes}


def body(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": dict(schema)}}}}


def model_ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


JOBS_BODY = body({"oneOf": [{"$ref": REF.format(model="Job")},
                            {"type": "object", "required": ["jobs"], "additionalProperties": False,
                             "properties": {"jobs": {"type": "array", "maxItems": 1000,
                                                     "items": {"$ref": REF.format(model="Job")}}}}]})


def spec(app: FastAPI, models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """The description of every route under /v1."""
    described = get_openapi(title="dunning billing API", version="1", routes=app.routes,
                            description="Payment reminders: jobs, cadences and events in; their record out.")
    described["paths"] = {path: item for path, item in described.get("paths", {}).items() if path.startswith("/v1/")}
    schemas = described.setdefault("components", {}).setdefault("schemas", {})
    job = Job.model_json_schema(ref_template=REF)
    schemas.update(job.pop("$defs", {}))
    schemas["Job"] = job
    schemas["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for model in models:
        found = model.model_json_schema(ref_template=REF)
        schemas.update(found.pop("$defs", {}))
        schemas[model.__name__] = found
    described["webhooks"] = webhooks(schemas)
    described["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                             "description": "A key from `dunning keys create`"}}
    problem = {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}
    for item in described.get("paths", {}).values():
        for method, operation in item.items():
            operation["security"] = [{"bearer": []}]
            for code, response in operation.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400:  # ours are problem details, FastAPI's default is not
                    response["content"] = problem
            if method == "post":
                operation.setdefault("parameters", []).append({
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "The same key and body within 24 h: the first answer again",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255}})
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "job_id":
                    parameter["description"] = "The job id; its `/` percent-encoded (INV-1%2Fdue_day)"
    return described


_SIGNED = [{"name": name, "in": "header", "required": True, "description": what, "schema": {"type": "string"}}
           for name, what in (("webhook-id", "The message id: the same on every retry (drop repeats by it)"),
                              ("webhook-timestamp", "When this attempt was sent, Unix seconds"),
                              ("webhook-signature", "v1,<base64 HMAC-SHA256 of id.timestamp.body>, keyed by the "
                                                    "base64 part of DUNNING_WEBHOOK_SECRET (Standard Webhooks)"))]


def webhooks(schemas: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.1's `webhooks`: what dunning POSTs to DUNNING_WEBHOOK_URL, and the answers it understands."""
    found = WebhookMessage.model_json_schema(ref_template=REF)
    schemas.update(found.pop("$defs", {}))
    schemas["WebhookMessage"] = found
    return {kind: {"post": {
        "summary": summary, "operationId": "webhook_" + kind.replace(".", "_"), "parameters": _SIGNED,
        "requestBody": {"required": True, "content": {"application/json": {"schema": model_ref(WebhookMessage)}}},
        "responses": {"2XX": {"description": "Taken: not sent again"},
                      "410": {"description": "Gone: nothing more is sent to this endpoint (`dunning webhooks "
                                             "resume` undoes it)"},
                      "default": {"description": "Anything else, or no answer within 15 s: retried with "
                                                 "backoff (5 s doubling to 6 h, jittered) for 3 days"}}}}
        for kind, summary in SUMMARIES.items()}
