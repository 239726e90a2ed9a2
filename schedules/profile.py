"""The resolved profile that `decide` reads: a file folded together with all it extends.

Combining is *strictest wins* and needs no special cases: windows and caps are all
kept (an instant must pass every window, a channel every cap, so the tightest one
binds), and switches that protect the debtor are on when any source turns them on.
Nothing a profile says can loosen what it extends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schedules.spec import Cap, Cooldown, Ladder, Retention, Window
from schedules.windows import Calendar


@dataclass(frozen=True, eq=False)
class Profile:
    """A profile with everything it extends folded in: the whole policy for a job."""

    name: str
    description: str
    sources: tuple[str, ...]
    windows: tuple[Window, ...]
    caps: tuple[Cap, ...]
    cooldowns: tuple[Cooldown, ...]
    ladder: Ladder
    honour_cease: bool
    phone_zones_always: bool
    retention: tuple[Retention, ...] = ()  # all that apply; the longest binds (`kept_by`)
    debtor_kind: str | None = None  # business or person, from the first source that says
    calendar: Calendar = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "calendar", Calendar(self.windows))

    @property
    def kept_by(self) -> Retention | None:
        """The retention rule that binds: the longest (None: nothing says how long, so
        records are kept until someone decides)."""
        return max(self.retention, key=lambda rule: rule.years_after_last_activity, default=None)
