"""The log as plain rows for people and other systems (`dunning log show`, `log export`):
ISO times, personal data masked unless someone asks for it in full."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from worker.masking import mask

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
        if name == "recipient" and value and not unmasked:
            value = mask("address", value)
        out[name] = value
    return out


def to_json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)
