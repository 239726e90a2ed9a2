"""Frequency caps (F-*): how often a person may be contacted, counted from past attempts.

A capped channel becomes usable again when enough counted attempts have left the
rolling window (or the calendar day has ended), so a cap yields a *time*, not just
a no: the decision can defer to exactly then.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from schedules.facts import CONNECTED, UNANSWERED, Attempt
from schedules.profile import Profile
from schedules.spec import Cap, Cooldown


class Block(NamedTuple):
    """A channel is capped until `until` by rule `rule`, for `reason`."""

    until: datetime
    rule: str
    reason: str


def blocked(profile: Profile, channel: str, attempts: Iterable[Attempt], invoice_id: str,
            address: str | None, now: datetime, zone: ZoneInfo) -> Block | None:
    """The latest release among the caps and cooldowns `channel` is over now, or None."""
    attempts = tuple(a for a in attempts if a.at <= now)
    worst: Block | None = None
    for cap in profile.caps:
        if channel in cap.channels:
            block = _cap_block(cap, attempts, invoice_id, address, now, zone)
            if block and (worst is None or block.until > worst.until):
                worst = block
    for cooldown in profile.cooldowns:
        if channel in cooldown.channels:
            block = _cooldown_block(cooldown, attempts, invoice_id, now, zone)
            if block and (worst is None or block.until > worst.until):
                worst = block
    return worst


def _cap_block(cap: Cap, attempts: tuple[Attempt, ...], invoice_id: str, address: str | None,
               now: datetime, zone: ZoneInfo) -> Block | None:
    relevant = [a.at for a in attempts if a.channel in cap.channels
                and _in_scope(a, cap.per, invoice_id, address) and _counted(a, cap.counts)]
    if isinstance(cap.within, timedelta):
        counted = sorted(at for at in relevant if at > now - cap.within)
        if len(counted) < cap.limit:
            return None
        release = counted[len(counted) - cap.limit] + cap.within
        period = f"in {_period(cap.within)}"
    else:
        today = now.astimezone(zone).date()
        counted = [at for at in relevant if at >= datetime.combine(today, time(), zone)]
        if len(counted) < cap.limit:
            return None
        release = datetime.combine(today + timedelta(days=1), time(), zone)
        period = "today"
    what = "attempts" if cap.counts == "attempts" else f"{cap.counts} attempts"
    per = {"debt": "for this debt", "debtor": "for this debtor", "address": "to this address"}[cap.per]
    return Block(release, cap.id, f"{'/'.join(cap.channels)}: {len(counted)} {what} {per} {period} "
                                  f"(at most {cap.limit})")


def _cooldown_block(cooldown: Cooldown, attempts: tuple[Attempt, ...], invoice_id: str,
                    now: datetime, zone: ZoneInfo) -> Block | None:
    triggers = [a.at for a in attempts if a.outcome == cooldown.after and _in_scope(a, cooldown.per, invoice_id, None)]
    if not triggers:
        return None
    last_day = max(triggers).astimezone(zone).date()
    release = datetime.combine(last_day + timedelta(days=cooldown.days), time(), zone)
    if release <= now:
        return None
    return Block(release, cooldown.id, f"{'/'.join(cooldown.channels)}: {cooldown.after} on {last_day}; "
                                       f"none for {cooldown.days} days")


def _in_scope(attempt: Attempt, per: str, invoice_id: str, address: str | None) -> bool:
    if per == "debt":
        return attempt.invoice_id in (None, invoice_id)
    if per == "address":
        return attempt.address is None or address is None or attempt.address == address
    return True


def _counted(attempt: Attempt, counts: str) -> bool:
    if counts == "connected":
        return attempt.outcome in CONNECTED
    if counts == "unanswered":
        return attempt.outcome in UNANSWERED
    return True


def _period(within: timedelta) -> str:
    if within % timedelta(days=1) == timedelta(0):
        return f"{within.days} days"
    return f"{int(within.total_seconds() // 3600)} hours"
