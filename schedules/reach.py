"""Can a person reach the debtor now, and by which channel? What an operator working an
escalation needs before picking up the phone: the debtor's local time, whether the
contact window (W-*) is open and until when — or why not and when it opens — and, per
channel, whether it may be used now (consent, an address, opt-outs, caps: the same
checks `decide` makes, `decide.refusal` and `caps.blocked`). Pure, like `decide`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from schedules.caps import blocked
from schedules.decide import address_for, refusal
from schedules.facts import Facts
from schedules.profile import Profile
from schedules.spec import CHANNELS
from schedules.subject import Reminder
from schedules.zones import candidate_zones


@dataclass(frozen=True)
class ChannelNow:
    channel: str
    allowed: bool
    reason: str  # why not, or until when


@dataclass(frozen=True)
class Reach:
    zones: tuple[ZoneInfo, ...]  # the debtor's zones, as the policy judges them (all must permit)
    open_until: datetime | None  # the window is open now, until then
    opens_at: datetime | None  # the window is closed now; it opens then (None: not within the horizon)
    closed: tuple[str, ...]  # why it is closed now
    channels: tuple[ChannelNow, ...]

    @property
    def open(self) -> bool:
        return self.open_until is not None


def reach(job: Reminder, now: datetime, facts: Facts, profile: Profile) -> Reach:
    debtor = job.debtor
    zones = tuple(candidate_zones(debtor.timezone, debtor.phone, debtor.country, profile.phone_zones_always))
    if not zones:
        return Reach((), None, None, ("time zone unknown",),
                     tuple(ChannelNow(c, False, "time zone unknown") for c in CHANNELS))
    calendar = profile.calendar
    interval = calendar.next_permitted(zones, now, debtor.country, debtor.subdivision)
    is_open = interval is not None and interval.start <= now
    closed = () if is_open else tuple(c.reason for c in calendar.closures(zones, now, debtor.country,
                                                                          debtor.subdivision))
    channels = []
    for channel in CHANNELS:
        refused = refusal(channel, debtor, facts)
        if refused is not None:
            channels.append(ChannelNow(channel, False, refused[1].split(": ", 1)[-1]))
            continue
        block = blocked(profile, channel, facts.attempts, job.invoice.id, address_for(channel, debtor), now, zones[0])
        if block is not None:
            channels.append(ChannelNow(channel, False, f"{block.reason} ({block.rule})"))
        elif not is_open:
            channels.append(ChannelNow(channel, False, "outside the contact window"))
        else:
            channels.append(ChannelNow(channel, True, "within the contact window"))
    return Reach(zones, interval.end if is_open and interval else None,
                 interval.start if interval is not None and not is_open else None, closed, tuple(channels))
