"""The log as plain rows for people and other systems (`dunning log show`, `log export`,
the console's exports): ISO times, personal data masked — recipients, addresses and
reply texts in an event's detail, addresses in error texts — unless someone asks for
it in full."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TextIO

from worker.masking import mask, mask_in_text, mask_text

EXPORT_FIELDS = ("id", "occurred_at", "recorded_at", "kind", "status", "job_id", "invoice_id", "account_id",
                 "delivery_key", "channel", "recipient", "stage", "template", "template_version", "provider",
                 "provider_message_id", "error_code", "error_text", "reasons", "rules", "zones", "detail", "digest")


def for_export(row: Mapping[str, Any], unmasked: bool = False) -> dict[str, Any]:
    """One history row as plain values (ISO times), personal data masked unless asked."""
    out: dict[str, Any] = {}
    for name in EXPORT_FIELDS:
        value = row.get(name)
        if isinstance(value, datetime):
            value = value.isoformat()
        if not unmasked and value:
            if name == "recipient":
                value = mask("address", value)
            elif name == "error_text":
                value = mask_in_text(str(value))
            elif name == "detail":
                value = _masked(value)
        out[name] = value
    return out


_ADDRESSES = frozenset({"address", "from", "to", "recipient", "email", "phone"})


def _masked(value: Any, key: str = "") -> Any:
    """A detail's personal data masked: addresses, a reply's text, addresses inside other text."""
    if isinstance(value, dict):
        return {k: _masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, key) for v in value]
    if isinstance(value, str):
        if key in _ADDRESSES:
            return mask("address", value)
        if key in ("body", "name", "note"):
            return mask_text(value)
        return mask_in_text(value)
    return value


def to_json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)


def write_csv(items: Iterable[Mapping[str, Any]], stream: TextIO) -> None:
    """Rows made by `for_export` as CSV with a header (`EXPORT_FIELDS`; lists and details
    as JSON in their cell): the one CSV of the log, for `dunning log export` and the
    console's exports alike."""
    writer = csv.DictWriter(stream, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for item in items:
        writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                         for k, v in item.items()})
