"""The contact log's hash chain: what lets compliance prove nothing was altered.

Every event carries `digest` = SHA-256 of the previous event's digest and this event's
content, in a canonical form. The `claimed` event of a delivery also covers the
delivery row (recipient, template version, reasons, rules, zones), so the record of
what was sent, to whom and why is inside the chain too. Changing any covered field of
any row, or deleting a row, breaks the chain at that row; `verify` finds it.

A chain can be cut off at its end without a trace inside the database, so `verify`
prints the head (`ID:DIGEST`): kept somewhere else (a ticket, a daily email), it is an
anchor that `verify --head` checks the chain still passes through.

The canonical form is a contract: rows written by one version are verified by later
ones, so it never changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.contact_log.kinds import DeliveryStatus, Kind

GENESIS = "0" * 64
EVENT_FIELDS = ("delivery_id", "job_id", "invoice_id", "account_id", "kind", "status", "provider",
                "provider_message_id", "error_code", "error_text", "detail", "occurred_at", "recorded_at", "address")
DELIVERY_FIELDS = ("delivery_key", "job_id", "invoice_id", "account_id", "channel", "recipient", "stage", "template",
                   "template_version", "reasons", "rules", "zones", "claimed_at")


def digest(previous: str, event: Mapping[Any, Any], delivery: Mapping[Any, Any] | None = None) -> str:
    """The digest of an event that follows `previous` (with its delivery, for a claim)."""
    content: dict[str, Any] = {name: _plain(event.get(name)) for name in EVENT_FIELDS}
    if delivery is not None:
        content["delivery"] = {name: _plain(delivery.get(name)) for name in DELIVERY_FIELDS}
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{previous}\n{canonical}".encode()).hexdigest()


def covers_delivery(event: Mapping[Any, Any]) -> bool:
    """Whether an event's digest covers its delivery row: the claim, written with it."""
    return event.get("kind") == Kind.DELIVERY and event.get("status") == DeliveryStatus.CLAIMED


@dataclass
class Verdict:
    """What `verify` found: how much was checked, the head, and every break."""

    events: int = 0
    head: str = f"0:{GENESIS}"
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify(rows: Iterable[Mapping[Any, Any]], head: str | None = None) -> Verdict:
    """Walk events in id order (each with its delivery's columns prefixed `d_`, or None)
    and recompute the chain. After a break the stored digest is taken as given, so one
    altered row is one finding, not every row after it."""
    verdict = Verdict()
    previous, anchor_seen = GENESIS, head is None
    anchor_id, _, anchor_digest = (head or "").partition(":")
    for row in rows:
        verdict.events += 1
        delivery = ({name: row[f"d_{name}"] for name in DELIVERY_FIELDS}
                    if covers_delivery(row) and row.get("d_delivery_key") is not None else None)
        if covers_delivery(row) and delivery is None:
            verdict.problems.append(f"event {row['id']}: the delivery it claims ({row['delivery_id']}) is missing")
        expected = digest(previous, row, delivery)
        if row["digest"] != expected:
            verdict.problems.append(f"event {row['id']} ({row['kind']} {row['status']}, "
                                    f"{_plain(row['occurred_at'])}): altered, or an event before it removed")
        if str(row["id"]) == anchor_id:
            anchor_seen = True
            if row["digest"] != anchor_digest:
                verdict.problems.append(f"event {row['id']}: its digest is not the one in the anchor {head}")
        previous = row["digest"] or expected
        verdict.head = f"{row['id']}:{previous}"
    if not anchor_seen:
        verdict.problems.append(f"event {anchor_id} of the anchor {head} is gone: the log was cut short")
    return verdict


def _plain(value: Any) -> Any:
    """A value as JSON holds it, the same whether just written or read back."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value
