"""The answer to "whether, when and how": what `decide` returns and the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Action = Literal["send", "defer", "skip", "escalate"]


@dataclass(frozen=True, slots=True)
class Decision:
    """`reasons` are for people (they go into the contact log); `rules` are the IDs of
    COMPLIANCE.md that shaped the result; `zones` the candidate zones used."""

    action: Action
    reasons: tuple[str, ...]
    rules: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    channel: str | None = None
    stage: str | None = None
    template: str | None = None
    at: datetime | None = None
    window_end: datetime | None = None
    until: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The decision contract of DESIGN.md: absent parts are left out, times ISO 8601."""
        out: dict[str, Any] = {"action": self.action}
        for key in ("channel", "stage", "template", "at", "window_end", "until"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value.isoformat() if isinstance(value, datetime) else value
        out["reasons"] = list(self.reasons)
        out["rules"] = list(self.rules)
        out["zones"] = list(self.zones)
        return out
