"""When a debtor may be contacted: permitted intervals in their local time, as UTC instants.

A profile's windows are intersected per local day (weekday, month end, public
holidays, hours), then turned into absolute instants. Several candidate zones
(W-TZ) intersect again: an instant is permitted only if every zone permits it.

Clock changes (W-DST) are resolved by reading each local boundary both ways (PEP
495 `fold`) and keeping the stricter: an interval starts at the later reading and
ends at the earlier. A start in a skipped hour therefore moves forward by the
gap; a boundary in a repeated hour keeps to the inner of its two occurrences.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import holidays

from schedules.spec import WEEKDAYS, Window, clock_text

HORIZON = timedelta(days=400)
_FULL_DAY = ((0, 1440),)
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Interval(NamedTuple):
    """A permitted span [start, end) of absolute time."""

    start: datetime
    end: datetime


class Closure(NamedTuple):
    """Why an instant is not permitted: the rule that closes it, in words."""

    rule: str
    reason: str


@cache
def public_holidays(country: str, subdivision: str | None) -> holidays.HolidayBase | None:
    """The `holidays` calendar for a country; None where the package has none."""
    try:
        return holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError:
        return None


class Calendar:
    """The windows of one profile, with the per-day intervals it has already worked out.

    Computing a day's intervals costs a few microseconds of zoneinfo arithmetic; the
    same (zone, day, country) recurs for every debtor alike, so results are kept.
    """

    def __init__(self, windows: Sequence[Window]) -> None:
        self.windows = tuple(windows)
        self.rule_ids = tuple(dict.fromkeys(w.id for w in self.windows))
        self._days: dict[tuple[str, date, str, str | None], tuple[Interval, ...]] = {}

    def day(self, zone: ZoneInfo, day: date, country: str, subdivision: str | None) -> tuple[Interval, ...]:
        """The permitted intervals of one local day in one zone."""
        key = (zone.key, day, country, subdivision)
        found = self._days.get(key)
        if found is None:
            if len(self._days) > 100_000:
                self._days.clear()
            found = self._days[key] = self._compute_day(zone, day, country, subdivision)
        return found

    def _compute_day(self, zone: ZoneInfo, day: date, country: str, subdivision: str | None) -> tuple[Interval, ...]:
        ranges: tuple[tuple[int, int], ...] = _FULL_DAY
        feast = public_holidays(country, subdivision)
        for window in self.windows:
            if _day_closure(window, day, feast) is not None:
                return ()
            ranges = _intersect(ranges, window.hours)
        intervals = []
        for start, end in ranges:
            absolute = Interval(_instant(day, start, zone, later=True), _instant(day, end, zone, later=False))
            if absolute.start < absolute.end:
                intervals.append(absolute)
        return tuple(intervals)

    def interval_from(self, zone: ZoneInfo, t: datetime, country: str, subdivision: str | None,
                      limit: datetime) -> Interval | None:
        """The first permitted interval in `zone` that ends after `t` (it may contain `t`)."""
        day = t.astimezone(zone).date()
        while True:
            for interval in self.day(zone, day, country, subdivision):
                if interval.end > t:
                    return interval
            day += timedelta(days=1)
            if datetime.combine(day, time(), zone) > limit:
                return None

    def next_permitted(self, zones: Sequence[ZoneInfo], t: datetime, country: str,
                       subdivision: str | None, horizon: timedelta = HORIZON) -> Interval | None:
        """The earliest instant ≥ t permitted in every zone, and when that permission ends.

        None if there is none within `horizon` (e.g. candidate zones too far apart
        for their windows to overlap).
        """
        limit = t + horizon
        while t <= limit:
            latest_start, earliest_end = t, None
            for zone in zones:
                interval = self.interval_from(zone, t, country, subdivision, limit)
                if interval is None:
                    return None
                if interval.start > latest_start:
                    latest_start = interval.start
                if earliest_end is None or interval.end < earliest_end:
                    earliest_end = interval.end
            if latest_start == t and earliest_end is not None:
                return Interval(t, earliest_end)
            t = latest_start
        return None

    def closures(self, zones: Sequence[ZoneInfo], t: datetime, country: str,
                 subdivision: str | None) -> list[Closure]:
        """Every rule that closes `t`, with a reason a person reads in the contact log."""
        found: list[Closure] = []
        feast = public_holidays(country, subdivision)
        for zone in zones:
            local = t.astimezone(zone)
            suffix = f" ({zone.key})" if len(zones) > 1 else ""
            here = [Closure(w.id, reason + suffix) for w in self.windows
                    if (reason := _day_closure(w, local.date(), feast) or _hour_closure(w, local))]
            if not here and not any(i.start <= t < i.end for i in self.day(zone, local.date(), country, subdivision)):
                here.append(Closure("W-DST", f"{local:%H:%M} local is in a clock change{suffix}"))
            found.extend(here)
        return list(dict.fromkeys(found))


def _day_closure(window: Window, day: date, feast: holidays.HolidayBase | None) -> str | None:
    if WEEKDAYS[day.weekday()] not in window.days:
        return _DAY_NAMES[day.weekday()]
    if window.month_end_days:
        last = calendar.monthrange(day.year, day.month)[1]
        if day.day > last - window.month_end_days:
            return f"last {window.month_end_days} days of the month"
    if window.public_holidays and feast is not None and day in feast:
        return f"public holiday: {feast.get(day)}"
    return None


def _hour_closure(window: Window, local: datetime) -> str | None:
    minute = local.hour * 60 + local.minute
    if any(start <= minute < end for start, end in window.hours):
        return None
    spans = ", ".join(f"{clock_text(s)}–{clock_text(e)}" for s, e in window.hours)
    return f"{local:%H:%M} local is outside {spans}"


def _intersect(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out = []
    for a_start, a_end in a:
        for b_start, b_end in b:
            start, end = max(a_start, b_start), min(a_end, b_end)
            if start < end:
                out.append((start, end))
    return tuple(sorted(out))


def _instant(day: date, minutes: int, zone: ZoneInfo, later: bool) -> datetime:
    """A local wall-clock time as UTC, taking the later or earlier of its two readings."""
    if minutes >= 1440:
        day, minutes = day + timedelta(days=1), minutes - 1440
    hour, minute = divmod(minutes, 60)
    readings = [datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone, fold=fold).astimezone(UTC)
                for fold in (0, 1)]
    return max(readings) if later else min(readings)
