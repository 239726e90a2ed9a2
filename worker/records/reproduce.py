"""A delivery's message as it was sent, reproduced from what the log kept — the job as
received, the template versions it used, the day and balance it was rendered for —
through the same `compose` the worker uses, and checked against the digest chained
with its claim: the console says whether what it shows is byte for byte what went out
(it is not when the sender's settings or the signing key changed since)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from channels.segments import count_segments
from worker.contact_log.timeline import DeliveryRecord
from worker.db.vault import ERASED, SEALED
from worker.jobs.parse import parse_job
from worker.messages import unsubscribe
from worker.messages.context import compose
from worker.messages.render import Rendered, TemplateError, stored_renderer
from worker.messages.sources import TemplateSource
from worker.policy import profiles
from worker.settings import Settings


@dataclass(frozen=True)
class Reproduced:
    rendered: Rendered | None
    identical: bool | None  # None: no digest was kept with the claim (claimed before they were)
    problem: str | None = None
    encoding: str | None = None  # SMS: GSM-7 or UCS-2
    segments: int | None = None


def reproduce(record: DeliveryRecord, settings: Settings) -> Reproduced:
    delivery, message = record.delivery, record.message or {}
    if record.payload is None:
        return Reproduced(None, None, "the job is no longer kept")
    if record.payload in (ERASED, SEALED):
        return Reproduced(None, None, "the person's data was erased" if record.payload == ERASED
                          else "the job is sealed and DUNNING_MASTER_KEY is not set")
    if not record.sources:
        return Reproduced(None, None, "the template versions it used are not kept")
    parsed = parse_job(json.loads(record.payload), profiles(settings.profile_dir), "console")
    if parsed.job is None:
        return Reproduced(None, None, "the job as kept no longer reads: " + "; ".join(parsed.errors))
    job = parsed.job
    kept = [TemplateSource(name, version, source) for name, version, source in record.sources]
    locale = message.get("locale") or kept[0].name.split("/")[0]
    today = date.fromisoformat(message["today"]) if message.get("today") else delivery["claimed_at"].date()
    balance = Decimal(message["balance"]) if message.get("balance") else None
    link = (unsubscribe.url(settings.public_url, settings.secret_key or "", job.debtor.account_id, "email",
                            delivery["recipient"]) if delivery["channel"] == "email" else None)
    try:
        rendered = compose(stored_renderer(kept, locale), job, delivery["stage"], delivery["channel"], today,
                           settings.sender, link, balance)
    except TemplateError as error:
        return Reproduced(None, None, f"cannot be rendered again: {error}")
    identical = rendered.digest == message["sha256"] if message.get("sha256") else None
    if delivery["channel"] == "sms":
        counted = count_segments(rendered.text)
        return Reproduced(rendered, identical, encoding=counted.encoding, segments=counted.parts)
    return Reproduced(rendered, identical)
