"""Compliance's reading of the record: search (by name, account, invoice or address),
an account's or an invoice's timeline, one message as it was sent (reproduced from its
kept template versions), and the export of what a page shows. Every look is an `access`
event (`Guard.note_access`); seeing personal data unmasked is one more."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from schedules.spec import CHANNELS
from worker.contact_log import ContactLog, for_export, to_json_line, write_csv
from worker.contact_log.kinds import AccessStatus
from worker.http.console.guard import Guard
from worker.http.console.pages import HEADERS, page
from worker.http.console.views import KINDS, describe, zone_of
from worker.masking import mask
from worker.records.reproduce import reproduce
from worker.settings import Settings
from worker.users.people import Session


def _chosen(params: Any) -> tuple[str, str]:
    """The kind and channel a page is filtered by ("" for all), only known ones."""
    kind = params.get("kind", "") if params.get("kind", "") in KINDS else ""
    channel = params.get("channel", "") if params.get("channel", "") in CHANNELS else ""
    return kind, channel


def _bounds(params: Any) -> tuple[dict[str, datetime], str | None]:
    """`since` and `until` (dates, UTC), and what is wrong with either."""
    problem, bounds = None, dict[str, datetime]()
    for name in ("since", "until"):
        if params.get(name):
            try:
                bounds[name] = datetime.fromisoformat(params[name]).replace(tzinfo=UTC)
            except ValueError:
                problem = f"{name}: {params[name]!r} is not a date (YYYY-MM-DD)"
    return bounds, problem


class Record:
    def __init__(self, log: ContactLog, guard: Guard, settings: Settings, now: Callable[[], datetime]) -> None:
        self.log, self.guard, self.settings, self.now = log, guard, settings, now

    async def search(self, request: Request, session: Session) -> Response:
        query = request.query_params.get("q", "").strip()[:320]
        results = self.log.search(query, self.now().date()) if query else []
        if query:
            self.guard.note_access(session, request, AccessStatus.VIEWED, search=query, found=len(results))
        recent = [] if query else self.log.recent_accounts()
        return page("search.html", user=session.user, csrf=session.csrf, query=query, results=results,
                    recent=recent)

    async def account(self, request: Request, session: Session) -> Response:
        return self.timeline(request, session, "account", request.path_params["account_id"])

    async def invoice(self, request: Request, session: Session) -> Response:
        return self.timeline(request, session, "invoice", request.path_params["invoice_id"])

    def timeline(self, request: Request, session: Session, about: str, value: str) -> Response:
        params = request.query_params
        (kind, channel), unmasked = _chosen(params), params.get("unmasked") == "1"
        before = int(params["before"]) if params.get("before", "").isdigit() else None
        bounds, problem = _bounds(params)
        account, invoice = (value, None) if about == "account" else (None, value)
        found = self.log.timeline(account=account, invoice=invoice, kinds=(kind,) if kind else (),
                                  channel=channel or None, since=bounds.get("since"), until=bounds.get("until"),
                                  before=before)
        zone = zone_of(found.rows)
        self.guard.note_access(session, request, AccessStatus.VIEWED, **{about: value})
        if unmasked:
            self.guard.note_access(session, request, AccessStatus.UNMASKED, **{about: value})
        kept = {k: v for k, v in (("kind", kind), ("channel", channel), ("since", params.get("since", "")),
                                  ("until", params.get("until", "")), ("unmasked", "1" if unmasked else ""))
                if v}
        older = f"{request.url.path}?{urlencode({**kept, 'before': found.older})}" if found.older else None
        received = [{"job_id": job["job_id"], "invoice_id": job["invoice_id"],
                     "utc": job["received_at"].strftime("%Y-%m-%d %H:%M:%S"),
                     "local": job["received_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M %a"),
                     "queued": "yes" if job["queued_at"] else "not yet"}
                    for job in self.log.jobs_of(account=account, invoice=invoice)]
        exporting = {about: value, **{k: v for k, v in kept.items() if k in ("kind", "channel", "unmasked")}}
        exports = {f: "/console/export?" + urlencode({**exporting, "format": f}) for f in ("csv", "jsonl")}
        return page("timeline.html", user=session.user, csrf=session.csrf,
                    heading=f"Account {value}" if about == "account" else f"Invoice {value}", path=request.url.path,
                    rows=[describe(row, zone, unmasked) for row in found.rows], zone=zone.key, kinds=KINDS,
                    channels=CHANNELS, kind=kind, channel=channel, since=params.get("since", ""),
                    until=params.get("until", ""), unmasked=unmasked, older=older, problem=problem,
                    exports=exports, received=received)

    async def export(self, request: Request, session: Session) -> Response:
        params = request.query_params
        about = next((name for name in ("account", "invoice", "search") if params.get(name)), "")
        value = params.get(about, "")[:320] if about else ""
        if not value:
            return page("error.html", 400, user=session.user, csrf=session.csrf, title="Nothing to export",
                        message="Export from a search or from an account's or an invoice's page.")
        (kind, channel), unmasked = _chosen(params), params.get("unmasked") == "1"
        as_csv = params.get("format") != "jsonl"
        rows = self._rows(about, value, kind, channel)
        self.guard.note_access(session, request, AccessStatus.EXPORTED, **{about: value},
                               format="csv" if as_csv else "jsonl", events=len(rows))
        if unmasked:
            self.guard.note_access(session, request, AccessStatus.UNMASKED, **{about: value})
        items = [for_export({**row, "reasons": row["d_reasons"], "rules": row["d_rules"], "zones": row["d_zones"]},
                            unmasked) for row in reversed(rows)]
        name = f"dunning-{about}-{re.sub(r'[^A-Za-z0-9._-]', '_', value)[:80]}"
        if as_csv:
            text = io.StringIO()
            write_csv(items, text)
            body, media, suffix = text.getvalue(), "text/csv; charset=utf-8", "csv"
        else:
            body, media, suffix = "".join(to_json_line(item) + "\n" for item in items), "application/x-ndjson", "jsonl"
        return Response(body, media_type=media, headers={
            **HEADERS, "content-disposition": f'attachment; filename="{name}.{suffix}"'})

    def _rows(self, about: str, value: str, kind: str, channel: str) -> list[dict[str, Any]]:
        """Every event of the export, newest first. A search exports the record of
        everything it found: each invoice, or account."""
        targets = ([(f.account_id if f.invoice_id is None else None, f.invoice_id)
                    for f in self.log.search(value, self.now().date()) if f.address is None] if about == "search"
                   else [(value if about == "account" else None, value if about == "invoice" else None)])
        kept: dict[int, dict[str, Any]] = {}
        for account, invoice in targets:
            before = None
            while True:
                found = self.log.timeline(account=account, invoice=invoice, kinds=(kind,) if kind else (),
                                          channel=channel or None, before=before, limit=5000)
                kept.update((row["id"], row) for row in found.rows)
                if found.older is None:
                    break
                before = found.older
        return [kept[i] for i in sorted(kept, reverse=True)]

    async def delivery(self, request: Request, session: Session) -> Response:
        delivery_id = request.path_params["delivery_id"]
        record = self.log.delivery_record(delivery_id)
        if record is None:
            return page("error.html", 404, user=session.user, csrf=session.csrf, title="No such message",
                        message=f"No delivery has the number {delivery_id}.")
        self.guard.note_access(session, request, AccessStatus.VIEWED, delivery=delivery_id)
        found = reproduce(record, self.settings)
        return page("delivery.html", user=session.user, csrf=session.csrf, d=record.delivery,
                    recipient=mask("address", record.delivery["recipient"]), events=record.events,
                    decision=record.decision, reproduced=found, message=found.rendered)


def add(routes: APIRouter, guard: Guard, log: ContactLog, settings: Settings, now: Callable[[], datetime]) -> None:
    pages, compliance = Record(log, guard, settings, now), guard("compliance")
    routes.get("/search")(compliance(pages.search))
    routes.get("/export")(compliance(pages.export))
    routes.get("/accounts/{account_id:path}")(compliance(pages.account))
    routes.get("/invoices/{invoice_id:path}")(compliance(pages.invoice))
    routes.get("/deliveries/{delivery_id:int}")(compliance(pages.delivery))
