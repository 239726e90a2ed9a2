"""A person's record for the console, one page at a time: the events of an account or
an invoice in the order they were recorded, with their deliveries, filtered by kind,
channel and time, newest first and paginated by event id (an indexed range, however
long the log)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, select

from worker.contact_log.kinds import Kind
from worker.db.schema import deliveries, events, jobs, template_versions
from worker.db.vault import Vault

PAGE = 200


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]  # newest first
    older: int | None  # the id to pass as `before` for the next page, if there is one


class Timelines:
    """The console's timeline reads (mixed into `ContactLog`)."""

    engine: Engine
    vault: Vault

    def timeline(self, *, account: str | None = None, invoice: str | None = None, kinds: tuple[str, ...] = (),
                 channel: str | None = None, since: datetime | None = None, until: datetime | None = None,
                 before: int | None = None, limit: int = PAGE) -> Page:
        if (account is None) == (invoice is None):
            raise ValueError("a timeline is of one account or one invoice")
        query = (select(events, deliveries.c.delivery_key, deliveries.c.channel, deliveries.c.recipient,
                        deliveries.c.stage,
                        deliveries.c.template, deliveries.c.template_version, deliveries.c.reasons.label("d_reasons"),
                        deliveries.c.rules.label("d_rules"), deliveries.c.zones.label("d_zones"))
                 .select_from(events.outerjoin(deliveries, events.c.delivery_id == deliveries.c.id))
                 .where(events.c.account_id == account if account is not None else events.c.invoice_id == invoice)
                 .order_by(events.c.id.desc()).limit(limit + 1))
        if kinds:
            query = query.where(events.c.kind.in_(sorted(kinds)))
        if channel:
            query = query.where(or_(deliveries.c.channel == channel,
                                    (events.c.kind == Kind.DECISION) & (events.c.detail["channel"].as_string()
                                                                        == channel)))
        if since is not None:
            query = query.where(events.c.occurred_at >= since)
        if until is not None:
            query = query.where(events.c.occurred_at < until)
        if before is not None:
            query = query.where(events.c.id < before)
        with self.engine.connect() as conn:
            rows = [self.vault.open_row(row._mapping) for row in conn.execute(query)]
        older = rows[limit - 1]["id"] if len(rows) > limit else None
        return Page(rows[:limit], older)

    def jobs_of(self, *, account: str | None = None, invoice: str | None = None,
                limit: int = 500) -> list[dict[str, Any]]:
        """The jobs billing sent for an account or an invoice, as intake received them, oldest first."""
        about = jobs.c.account_id == account if account is not None else jobs.c.invoice_id == invoice
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(jobs.c.job_id, jobs.c.invoice_id, jobs.c.parent_id, jobs.c.received_at, jobs.c.queued_at)
                .where(about).order_by(jobs.c.received_at, jobs.c.job_id).limit(limit))]

    def delivery_record(self, delivery_id: int) -> DeliveryRecord | None:
        return delivery_record(self.engine, self.vault, delivery_id)


@dataclass(frozen=True)
class DeliveryRecord:
    """Everything the log holds about one delivery: its row, its events in order, the
    decision that allowed it, what reproduces its message, the job and template sources."""

    delivery: dict[str, Any]
    events: list[dict[str, Any]]
    decision: dict[str, Any] | None
    message: dict[str, Any] | None  # the claim's: digest, template versions, locale, day, balance
    payload: str | None  # the job as received
    sources: list[tuple[str, str, str]]  # (name, version, source) of the versions it used


def delivery_record(engine: Engine, vault: Vault, delivery_id: int) -> DeliveryRecord | None:
    with engine.connect() as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
        if row is None:
            return None
        found = [vault.open_row(r._mapping) for r in conn.execute(
            select(events).where(events.c.delivery_id == delivery_id).order_by(events.c.id))]
        claimed = next((e for e in found if e["kind"] == Kind.DELIVERY and e["status"] == "claimed"), None)
        decision = None
        if claimed is not None:
            decision = conn.execute(select(events.c.detail).where(
                events.c.job_id == row.job_id, events.c.kind == Kind.DECISION, events.c.status == "send",
                events.c.id < claimed["id"]).order_by(events.c.id.desc()).limit(1)).scalar()
        message = ((claimed or {}).get("detail") or {}).get("message")
        versions = list((message or {}).get("templates") or ([row.template_version] if row.template_version else []))
        sources = [(r.name, r.version, r.source) for r in conn.execute(
            select(template_versions).where(template_versions.c.version.in_(versions)))] if versions else []
        payload = vault.open("payload", conn.execute(select(jobs.c.payload)
                                                     .where(jobs.c.job_id == row.job_id)).scalar())
    return DeliveryRecord(vault.open_row(row._mapping), found, decision, message, payload, sources)
