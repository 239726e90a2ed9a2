"""One-click unsubscribe (RFC 8058): the page a link in an email opens (/u/TOKEN), and
the POST that mail clients send. The token is signed (`worker.messages.unsubscribe`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from worker.contact_log import ContactLog
from worker.masking import mask
from worker.messages import unsubscribe


def router(log: ContactLog, secret: str, now: Callable[[], datetime]) -> APIRouter:
    routes = APIRouter()

    @routes.get("/u/{token}")
    async def unsubscribe_page(token: str) -> Response:
        found = unsubscribe.read(secret, token)
        if found is None:
            return HTMLResponse(_page("Link not valid", "This unsubscribe link is not valid."), status_code=404)
        _account, channel, address = found
        form = (f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
                f'<button type="submit">Unsubscribe {escape(mask("address", address))}</button></form>')
        return HTMLResponse(_page("Unsubscribe", f"Stop {escape(channel)} reminders to "
                                                 f"{escape(mask('address', address))}?{form}"))

    @routes.post("/u/{token}")
    async def unsubscribe_now(token: str, request: Request) -> Response:
        found = unsubscribe.read(secret, token)
        if found is None:
            return HTMLResponse(_page("Link not valid", "This unsubscribe link is not valid."), status_code=404)
        form: Mapping[str, object] = await request.form()
        if form.get("List-Unsubscribe") != "One-Click":
            return HTMLResponse(_page("Not unsubscribed", "Expected List-Unsubscribe=One-Click (RFC 8058)."),
                                status_code=400)
        account, channel, address = found
        await run_in_threadpool(lambda: log.suppress(account, address, channel, "one-click unsubscribe (RFC 8058)",
                                                     now(), by="list-unsubscribe"))
        return HTMLResponse(_page("Unsubscribed", f"{escape(mask('address', address))} will get no more reminders."))

    return routes


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title></head>"
            f"<body><h1>{escape(title)}</h1><p>{body}</p></body></html>")
