"""The cadence: every step of a registered invoice's ladder, planned at registration.

A billing system that registers an invoice hands over the whole course (DOMAIN.md):
one step per sending stage, repeated every `every` days where the stage says so
(overdue_early every 2 days, overdue_late daily), and one step for an escalating
stage. Each step is released by the agenda and then decided like any reminder, so
windows, caps, payments and disputes are checked at the moment it would go out, not
at planning time. Planning only picks a sensible moment: the first permitted instant
of the step's day. A pre-due step whose day is closed (a weekend, month end) moves
*earlier* — a reminder before the due date is worthless after it — and says so with
`not_before`; any other closed step moves to the next permitted instant. A step
moved past the last day of its stage is dropped (it would be skipped), and so is one
that lands on a day another step has as its own (a Saturday step of overdue_late
becomes Monday's, which Monday's step already is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schedules.profile import Profile
from schedules.spec import Stage
from schedules.subject import Reminder
from schedules.zones import candidate_zones, local_day


@dataclass(frozen=True)
class Step:
    """One planned reminder: the `n`th of its stage, released at `at` for local day `day`."""

    stage: str
    n: int
    day: date
    at: datetime
    not_before: date | None = None  # set when a pre-due step was moved earlier than its stage starts

    def job_id(self, invoice_id: str) -> str:
        return f"{invoice_id}/{self.stage}/{self.n}"

    def local_day(self, zone: ZoneInfo) -> date:
        return self.at.astimezone(zone).date()

    def on_its_day(self, zone: ZoneInfo) -> bool:
        return self.local_day(zone) == self.day


def plan(job: Reminder, now: datetime, profile: Profile) -> tuple[Step, ...]:
    """Every step of the ladder still ahead of `now` (steps of days gone by are dropped;
    a single-step stage still running today gets its step today)."""
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (with a time zone)")
    debtor = job.debtor
    zones = candidate_zones(debtor.timezone, debtor.phone, debtor.country, profile.phone_zones_always)
    if not zones:
        return ()  # every step would be skipped (time zone unknown); decide says so when asked
    today = local_day(debtor, now)
    due = job.invoice.due_date
    planner = _Planner(job, now, profile, zones, today)
    steps: list[Step] = []
    for stage in profile.ladder.stages:
        for n, day in enumerate(_days(stage, due), start=1):
            last = due + timedelta(days=stage.to_dpd) if stage.to_dpd is not None else None
            if day < today:
                if stage.every is not None or (last is not None and last < today):
                    continue
                day = today  # a single-step stage that is still running: its step is today
            step = planner.step(stage, n, day, last, before_due=last is not None and last < due)
            if step is not None:
                steps.append(step)
    own_days = {step.day for step in steps if step.on_its_day(zones[0])}
    return tuple(step for step in steps if step.on_its_day(zones[0]) or step.local_day(zones[0]) not in own_days)


def _days(stage: Stage, due: date) -> list[date]:
    first = due + timedelta(days=stage.from_dpd)
    if stage.action == "escalate" or stage.every is None or stage.to_dpd is None:
        return [first]
    return [due + timedelta(days=dpd) for dpd in range(stage.from_dpd, stage.to_dpd + 1, stage.every)]


class _Planner:
    def __init__(self, job: Reminder, now: datetime, profile: Profile, zones: Sequence[ZoneInfo],
                 today: date) -> None:
        self.job, self.now, self.profile, self.zones, self.today = job, now, profile, zones, today

    def step(self, stage: Stage, n: int, day: date, last: date | None, before_due: bool) -> Step | None:
        opens = self._opens(day)
        if opens is not None or stage.action == "escalate":
            return Step(stage.name, n, day, opens or self._start(day))
        if before_due:
            earlier = day - timedelta(days=1)
            while earlier >= self.today:
                opens = self._opens(earlier)
                if opens is not None:
                    return Step(stage.name, n, day, opens, not_before=earlier)
                earlier -= timedelta(days=1)
        later = self._next_permitted(day, timedelta(days=366))
        if later is None:
            return Step(stage.name, n, day, self._start(day))  # none within a year: decide says why
        if last is not None and later.astimezone(self.zones[0]).date() > last:
            return None
        return Step(stage.name, n, day, later)

    def _opens(self, day: date) -> datetime | None:
        """The first permitted instant of local `day` (not before now), or None if it has none."""
        opens = self._next_permitted(day, timedelta(days=1))
        return opens if opens is not None and opens.astimezone(self.zones[0]).date() == day else None

    def _next_permitted(self, day: date, horizon: timedelta) -> datetime | None:
        debtor = self.job.debtor
        interval = self.profile.calendar.next_permitted(self.zones, self._start(day), debtor.country,
                                                        debtor.subdivision, horizon=horizon)
        return interval.start if interval is not None else None

    def _start(self, day: date) -> datetime:
        return max(datetime.combine(day, time(), self.zones[0]), self.now)
