"""The log's rows as the console shows them: times in UTC and in the debtor's zone,
what happened in words, addresses masked unless the reader asked to see them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker.masking import mask, mask_in_text

KINDS = ("decision", "delivery", "callback", "invoice", "account", "suppression", "escalation", "inbound",
         "cadence", "job", "webhook")


def zone_of(rows: Iterable[Mapping[str, Any]]) -> ZoneInfo:
    """The debtor's zone as the policy used it (a delivery's or a decision's first zone); UTC if none."""
    for row in rows:
        zones = row.get("d_zones") or (row.get("detail") or {}).get("zones") or []
        for name in zones:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _when(moment: datetime, zone: ZoneInfo) -> tuple[str, str]:
    return moment.strftime("%Y-%m-%d %H:%M:%S"), moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %a")


def _what(row: Mapping[str, Any], detail: Mapping[str, Any], unmasked: bool) -> list[str]:
    """What a row says, in a few words by its kind (addresses masked unless asked)."""
    kind = row["kind"]
    words: list[str] = []
    if kind == "decision":
        if detail.get("until"):
            words.append(f"moved to {detail['until']}")
        if detail.get("channel"):
            words.append(f"by {detail['channel']}")
        if detail.get("window_end"):
            words.append(f"window ends {detail['window_end']}")
    elif kind in ("delivery", "callback"):
        if row.get("recipient"):
            words.append("to " + (row["recipient"] if unmasked else mask("address", row["recipient"])))
        if row.get("provider"):
            words.append(f"via {row['provider']}")
        if detail.get("callback"):
            words.append("provider's callback")
    elif kind == "invoice":
        for key in ("amount", "until", "note"):
            if detail.get(key):
                words.append(f"{key}: {detail[key]}")
    elif kind == "suppression":
        address = detail.get("address") or row.get("address") or ""
        words.append((address if unmasked else mask("address", address)) + f" ({detail.get('channel', '?')})")
    elif kind == "webhook":
        words.append(f"{detail.get('type', '')} attempt {detail.get('attempt', '')}")
        code = str(row.get("error_code") or "")  # the endpoint's answer, kept as http-NNN: not an error when 2xx
        words.append(f"the endpoint answered HTTP {code[5:]}" if code.startswith("http-")
                     else "no answer from the endpoint" if code == "no-answer" else "")
    return words


def describe(row: Mapping[str, Any], zone: ZoneInfo, unmasked: bool) -> dict[str, Any]:
    """One row of a timeline: when, what, why, and the delivery it belongs to."""
    detail: dict[str, Any] = dict(row.get("detail") or {})
    kind, status = row["kind"], row["status"]
    utc, local = _when(row["occurred_at"], zone)
    shown = (lambda text: text) if unmasked else mask_in_text
    words = _what(row, detail, unmasked)
    if row.get("error_code") and kind != "webhook":
        words.append(f"error {row['error_code']}")
    if row.get("error_text"):
        words.append(shown(str(row["error_text"])))
    reasons = row.get("d_reasons") if kind == "delivery" and row.get("d_reasons") else detail.get("reasons", [])
    rules = row.get("d_rules") if kind == "delivery" and row.get("d_rules") else detail.get("rules", [])
    return {"id": row["id"], "utc": utc, "local": local, "kind": kind, "status": status,
            "channel": row.get("channel") or detail.get("channel") or "", "what": "; ".join(filter(None, words)),
            "reasons": list(reasons or []), "rules": list(rules or []), "by": detail.get("by", ""),
            "delivery_id": row.get("delivery_id") if kind == "delivery" and status == "claimed" else None,
            "suppressed": kind == "decision" and status == "skip"}
