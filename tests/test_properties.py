"""Properties of `decide` over generated debtors, zones, moments and facts.

The oracle below is written independently of `schedules.windows`: it checks one
instant against the profile's rules by reading the local wall clock, the way a
person with a calendar would. `decide` must agree with it.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from conftest import job_data
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schedules import Decision, Facts, decide
from schedules.profile import Profile
from worker.jobs.contract import Job
from worker.policy import profiles

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PROFILES = ["default", "cn-commercial", "cn-fi-consumer", "us-consumer-3p", "us-consumer-1p", "us-b2b", "us-ma",
            "eu", "uk-conc"]
# (timezone, phone, country, subdivision): stated zones, phones that point elsewhere, none at all.
DEBTORS = [
    ("Asia/Shanghai", "+8613800138000", "CN", None),
    (None, "+8613800138000", "CN", None),
    (None, None, "CN", None),
    ("America/New_York", "+12125550143", "US", "NY"),
    ("America/Los_Angeles", "+12125550143", "US", "CA"),
    (None, "+14155550100", "US", None),
    ("America/Chicago", "+16175550123", "US", "MA"),
    ("Europe/London", "+447911123456", "GB", None),
    ("Europe/Berlin", "+4915123456789", "DE", "BY"),
    ("Asia/Kolkata", "+919876543210", "IN", None),
    ("Asia/Kathmandu", None, "NP", None),
    ("Australia/Lord_Howe", None, "AU", None),
    ("America/St_Johns", None, "CA", None),
    ("Pacific/Chatham", None, "NZ", None),
]
START = datetime(2026, 1, 1, tzinfo=UTC)


def permitted(profile: Profile, instant: datetime, zone: str, country: str, subdivision: str | None) -> bool:
    """The oracle: is `instant` inside every window of `profile`, read on the local clock?"""
    local = instant.astimezone(ZoneInfo(zone))
    minute = local.hour * 60 + local.minute
    for window in profile.windows:
        if WEEKDAYS[local.weekday()] not in window.days:
            return False
        last = calendar.monthrange(local.year, local.month)[1]
        if window.month_end_days and local.day > last - window.month_end_days:
            return False
        if window.public_holidays and local.date() in _holidays(country, subdivision):
            return False
        if not any(start <= minute < end for start, end in window.hours):
            return False
    return True


@cache
def _holidays(country: str, subdivision: str | None) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdivision)


def permitted_everywhere(profile: Profile, instant: datetime, zones: tuple[str, ...], country: str,
                         subdivision: str | None) -> bool:
    return all(permitted(profile, instant, zone, country, subdivision) for zone in zones)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Job, datetime, Facts, Profile]:
    timezone, phone, country, subdivision = draw(st.sampled_from(DEBTORS))
    now = START + timedelta(seconds=draw(st.integers(0, 2 * 365 * 86400)))
    due = (now + timedelta(days=draw(st.integers(-16, 16)))).date()
    consent = {c: draw(st.booleans()) for c in ("email", "sms", "voice")}
    data: dict[str, Any] = job_data(invoice__due_date=str(due), debtor__timezone=timezone, debtor__phone=phone,
                                    debtor__country=country, debtor__consent=consent,
                                    debtor__preferred_channel=draw(st.sampled_from([None, "email", "sms", "voice"])),
                                    profile=draw(st.sampled_from(PROFILES)))
    data["debtor"].pop("subdivision", None)
    if subdivision:
        data["debtor"]["subdivision"] = subdivision
    job = Job.model_validate(data, context={"profiles": profiles(None)})
    addresses = [a for a in ("zhang.wei@example.com", phone) if a]
    some_address = st.lists(st.sampled_from(addresses), max_size=1) if addresses else st.just([])
    some_channel = st.lists(st.sampled_from(["email", "sms", "voice"]), max_size=1)
    known = Facts(suppressed_addresses=frozenset(draw(some_address)), invalid_addresses=frozenset(draw(some_address)),
                  suppressed_channels=frozenset(draw(some_channel)), failed_channels=frozenset(draw(some_channel)))
    return job, now, known, profiles(None)[job.profile]


def check(job: Job, now: datetime, known: Facts, profile: Profile) -> Decision:
    decision = decide(job, now, known, profile)
    event(f"{decision.action} in {len(decision.zones)} zone(s)")
    country, subdivision = job.debtor.country, job.debtor.subdivision
    zones = decision.zones
    if decision.action == "send":
        assert decision.at == now
        assert permitted_everywhere(profile, now, zones, country, subdivision), decision
        assert decision.window_end is not None and decision.window_end > now
        last_minute = decision.window_end - timedelta(minutes=1)
        assert permitted_everywhere(profile, max(now, last_minute), zones, country, subdivision), decision
        assert not permitted_everywhere(profile, decision.window_end, zones, country, subdivision), decision
    if decision.action == "defer":
        assert decision.until is not None and decision.until > now
        assert permitted_everywhere(profile, decision.until, zones, country, subdivision), decision
        if all(rule.startswith("W-") or rule.startswith("S-") for rule in decision.rules) \
                and "S-PROMISE" not in decision.rules:
            # Deferred by the window alone: nothing permitted between now and then.
            # Window edges sit on whole quarter hours of UTC (every offset is a multiple of 15 min).
            probe = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
            while probe < decision.until:
                if probe >= now:
                    assert not permitted_everywhere(profile, probe, zones, country, subdivision), (probe, decision)
                probe += timedelta(minutes=15)
            assert not permitted_everywhere(profile, now, zones, country, subdivision)
    return decision


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_sends_are_inside_and_deferrals_are_minimal_in_every_candidate_zone(case: tuple) -> None:
    check(*case)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_no_decision_uses_an_unconsented_channel_or_a_suppressed_address(case: tuple) -> None:
    job, now, known, profile = case
    decision = decide(job, now, known, profile)
    if decision.action == "send":
        channel = decision.channel
        assert channel is not None
        assert getattr(job.debtor.consent, channel)
        assert channel not in known.suppressed_channels | known.failed_channels
        address = job.debtor.email if channel == "email" else job.debtor.phone
        assert address and address.casefold() not in known.suppressed_addresses | known.invalid_addresses


@settings(max_examples=150, deadline=None)
@given(cases())
def test_a_deferral_target_is_itself_a_send_or_a_later_deferral(case: tuple) -> None:
    """Deciding again at the promised moment never goes backwards in time."""
    job, now, known, profile = case
    first = decide(job, now, known, profile)
    if first.action == "defer" and first.until is not None:
        again = decide(job, first.until, known, profile)
        assert again.action != "defer" or (again.until is not None and again.until > first.until)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["America/New_York", "Europe/London"]), st.integers(0, 3 * 24 * 60),
       st.sampled_from(["2026-03-07", "2026-03-28", "2026-10-24", "2026-10-31"]))
def test_around_clock_changes_the_legal_window_holds(zone: str, minutes: int, day: str) -> None:
    """Weekends of clock changes (US and UK), decided minute by minute for consumers."""
    country, phone = ("US", "+12125550143") if zone == "America/New_York" else ("GB", "+447911123456")
    now = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(zone)) + timedelta(minutes=minutes)
    data = job_data(invoice__due_date=str(now.date()), debtor__timezone=zone, debtor__phone=phone,
                    debtor__country=country, debtor__consent={"email": True}, profile="uk-conc")
    job = Job.model_validate(data, context={"profiles": profiles(None)})
    decision = check(job, now.astimezone(UTC), Facts(), profiles(None)["uk-conc"])
    if decision.action == "send":
        local = now.astimezone(ZoneInfo(zone))
        assert 8 <= local.hour < 21
