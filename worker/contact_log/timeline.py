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
from worker.contact_log.schema import deliveries, events

PAGE = 200


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]  # newest first
    older: int | None  # the id to pass as `before` for the next page, if there is one


class Timelines:
    """The console's timeline reads (mixed into `ContactLog`)."""

    engine: Engine

    def timeline(self, *, account: str | None = None, invoice: str | None = None, kinds: tuple[str, ...] = (),
                 channel: str | None = None, since: datetime | None = None, until: datetime | None = None,
                 before: int | None = None, limit: int = PAGE) -> Page:
        if (account is None) == (invoice is None):
            raise ValueError("a timeline is of one account or one invoice")
        query = (select(events, deliveries.c.channel, deliveries.c.recipient, deliveries.c.stage,
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
            rows = [dict(row._mapping) for row in conn.execute(query)]
        older = rows[limit - 1]["id"] if len(rows) > limit else None
        return Page(rows[:limit], older)
