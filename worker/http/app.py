"""`dunning serve`: what providers and people send back — Twilio's status callbacks and
SMS replies (`twilio.py`), one-click unsubscribes (`unsubscribe.py`) — the billing API
(`billing.py`) and the console for people (`console/`), as one FastAPI application,
run by uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from worker.contact_log import ContactLog
from worker.errors import ConfigError
from worker.http import billing, billing_reads, console, health, openapi, problems, twilio, unsubscribe
from worker.http.idempotency import Answers
from worker.http.measured import Measured
from worker.monitoring import database_check, redis_check
from worker.settings import Settings
from worker.wiring import Books, Links


def create_app(log: ContactLog, books: Books, links: Links, settings: Settings, now: Callable[[], datetime]) -> FastAPI:
    """The server over one log: its books, what it reaches beyond the log (`links`), its settings
    and its clock, each handed in by the entry point (`dunning serve`, a test)."""
    secret = settings.secret_key
    if not secret:
        raise ConfigError("DUNNING_SECRET_KEY is not set: unsubscribe links cannot be checked")
    app = FastAPI(title="dunning", docs_url=None, redoc_url=None, openapi_url=None)

    problems.install(app, settings.public_url)
    app.add_middleware(Measured)
    app.include_router(health.router({"database": database_check(log.engine),
                                      "redis": redis_check(lambda: links.client.ping())}))
    app.include_router(twilio.router(log, settings, now))
    app.include_router(unsubscribe.router(log, secret, now))
    app.include_router(billing.router(log, books.keys, books.jobs, Answers(log.engine), links, settings.profile_dir,
                                      now))
    app.include_router(billing_reads.router(log, books.keys, books.jobs, books.checkpoints, links, now))
    app.include_router(console.router(log, books, links, settings, now))
    described = openapi.spec(app, [billing.IntakeAnswer, billing.EventAnswer, billing.PaymentBody, billing.NoteBody,
                                   billing.DisputeBody, billing.PromiseBody, billing.OptOutBody,
                                   billing_reads.JobView, billing_reads.InvoiceView, billing_reads.CancelAnswer])

    @app.get("/v1/openapi.json", include_in_schema=False)
    async def description() -> JSONResponse:
        """The billing API's OpenAPI description (no key needed)."""
        return JSONResponse(described)

    return app
