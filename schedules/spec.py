"""What a policy profile file may say: the TOML schema, validated strictly.

Each rule carries the ID of COMPLIANCE.md that the contact log cites when the rule
blocks or defers a contact.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Channel = Literal["email", "sms", "voice"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "voice")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Outcome = Literal["delivered", "failed", "no-answer", "busy", "voicemail", "conversation"]

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
_DURATION = re.compile(r"^(\d+)([hd])$")


def _minutes(value: object) -> object:
    """'09:30' → 570. Minutes since local midnight keep window arithmetic exact."""
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ValueError(f"{value!r} is not a clock time (HH:MM, 00:00 to 24:00 expected)")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _duration(value: object) -> object:
    if value == "calendar_day":
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a period ('calendar_day', or e.g. '24h', '7d')")
    amount, unit = int(match[1]), match[2]
    return timedelta(hours=amount) if unit == "h" else timedelta(days=amount)


ClockMinutes = Annotated[int, BeforeValidator(_minutes)]
Period = Annotated[Literal["calendar_day"] | timedelta, BeforeValidator(_duration)]
RuleId = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Window(_Spec):
    """One contact-window rule (W-*). An instant is permitted only inside all of them."""

    id: RuleId
    days: tuple[Weekday, ...] = WEEKDAYS
    hours: tuple[tuple[ClockMinutes, ClockMinutes], ...]
    month_end_days: int = Field(0, ge=0, le=10)
    public_holidays: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        previous_end = -1
        for start, end in self.hours:
            if start >= end:
                raise ValueError(f"hours: {clock_text(start)}–{clock_text(end)} ends before it starts")
            if start < previous_end:
                raise ValueError("hours: ranges must be in order and not overlap")
            previous_end = end
        return self


class Cap(_Spec):
    """A frequency cap (F-*): at most `limit` counted attempts per `within`."""

    id: RuleId
    channels: tuple[Channel, ...] = Field(min_length=1)
    per: Literal["debt", "debtor", "address"]
    limit: int = Field(ge=1)
    within: Period
    counts: Literal["attempts", "connected", "unanswered"] = "attempts"
    note: str = ""


class Cooldown(_Spec):
    """No contact on `channels` for `days` calendar days after an `after` outcome.

    The day of that outcome is day 1 (Reg F 1006.14(b)(2)(i)(B)).
    """

    id: RuleId
    channels: tuple[Channel, ...] = Field(min_length=1)
    after: Outcome
    days: int = Field(ge=1, le=365)
    per: Literal["debt", "debtor"] = "debt"
    note: str = ""


class Stage(_Spec):
    """One rung of the ladder: days past due `from_dpd`…`to_dpd` (open-ended if absent)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    from_dpd: int
    to_dpd: int | None = None
    channels: tuple[Channel, ...] = ()
    action: Literal["send", "escalate"] = "send"
    every: int | None = Field(None, ge=1, le=90)  # a registered cadence repeats the stage every N days; once if absent

    @model_validator(mode="after")
    def _consistent(self) -> Stage:
        if self.to_dpd is not None and self.to_dpd < self.from_dpd:
            raise ValueError(f"stage {self.name}: to_dpd is before from_dpd")
        if self.action == "send" and not self.channels:
            raise ValueError(f"stage {self.name}: a sending stage needs channels")
        return self

    def covers(self, dpd: int) -> bool:
        return self.from_dpd <= dpd and (self.to_dpd is None or dpd <= self.to_dpd)


class Ladder(_Spec):
    stages: tuple[Stage, ...] = Field(min_length=1)
    escalate_after_unanswered_calls: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Ladder:
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("stages: names must be unique")
        for before, after in zip(self.stages, self.stages[1:], strict=False):
            if before.to_dpd is None or after.from_dpd <= before.to_dpd:
                raise ValueError(f"stages: {after.name} overlaps {before.name}; order them by days")
        return self

    def stage(self, name: str) -> Stage | None:
        return next((stage for stage in self.stages if stage.name == name), None)


class Retention(_Spec):
    """How long a debt's records are kept after the last collection activity on it; of
    all that apply to a debt, the longest wins (COMPLIANCE.md: retention takes the maximum)."""

    id: str = Field(pattern=r"^[A-Z][A-Z0-9-]*$")
    years_after_last_activity: int = Field(ge=1, le=100)
    note: str = ""


class ProfileFile(_Spec):
    """The contents of one `schedules/profiles/NAME.toml`."""

    description: str
    extends: tuple[str, ...] = ()
    debtor_kind: Literal["business", "person"] | None = None
    windows: tuple[Window, ...] = ()
    caps: tuple[Cap, ...] = ()
    cooldowns: tuple[Cooldown, ...] = ()
    ladder: Ladder | None = None
    honour_cease: bool = False
    retention: tuple[Retention, ...] = ()
    phone_zones: Literal["when_no_timezone", "always"] = "when_no_timezone"


def clock_text(minutes: int) -> str:
    """570 → '09:30'; 1440 → '24:00'."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"

