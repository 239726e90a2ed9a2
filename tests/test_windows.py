"""Contact windows in the debtor's local time: hours, weekdays, month end, holidays, DST, zones."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import at, make_job

from schedules import Profiles, decide
from schedules.facts import NOTHING_KNOWN
from schedules.spec import Window
from schedules.windows import Calendar
from schedules.zones import candidate_zones

SHANGHAI = "Asia/Shanghai"


def decision_at(profiles: Profiles, when: datetime, **changes: object):
    job = make_job(**changes)
    return decide(job, when, NOTHING_KNOWN, profiles[job.profile])


@pytest.mark.parametrize(("local", "permitted"), [
    ("2026-11-25T08:59:59", False), ("2026-11-25T09:00:00", True), ("2026-11-25T11:29:59", True),
    ("2026-11-25T11:30:00", False), ("2026-11-25T12:45:00", False), ("2026-11-25T13:29:00", False),
    ("2026-11-25T13:30:00", True), ("2026-11-25T17:29:59", True), ("2026-11-25T17:30:00", False),
    ("2026-11-25T20:00:00", False), ("2026-11-28T10:00:00", False),  # Saturday
    ("2026-11-29T10:00:00", False),  # Sunday
    ("2026-11-27T10:00:00", True),  # Friday, 4 days before month end
    ("2026-12-30T10:00:00", False), ("2026-12-31T10:00:00", False), ("2026-12-29T10:00:00", True),
    ("2026-10-01T10:00:00", False), ("2026-10-07T10:00:00", False), ("2026-10-08T10:00:00", True),  # National Day
    ("2027-02-08T10:00:00", False), ("2027-02-11T10:00:00", True),  # Spring Festival 2027
])
def test_default_profile_hours_in_local_time(profiles: Profiles, local: str, permitted: bool) -> None:
    calendar = profiles["default"].calendar
    instant = at(local, SHANGHAI)
    found = calendar.next_permitted([ZoneInfo(SHANGHAI)], instant, "CN", None)
    assert found is not None
    assert (found.start == instant) is permitted


def test_a_deferral_goes_to_the_start_of_the_next_permitted_interval(profiles: Profiles) -> None:
    # Friday 27 Nov 17:45 → Saturday, Sunday, then 30 Nov (month end, last 2 days), 1 Dec is Tuesday.
    decision = decision_at(profiles, at("2026-11-27T17:45:00", SHANGHAI), invoice__due_date="2026-12-01")
    assert decision.action == "defer"
    assert decision.until == at("2026-12-01T09:00:00", SHANGHAI)
    assert decision.until.utcoffset() == timedelta(hours=8)


def test_lunch_break_defers_to_13_30(profiles: Profiles) -> None:
    decision = decision_at(profiles, at("2026-12-01T11:40:00", SHANGHAI), invoice__due_date="2026-12-01")
    assert decision.action == "defer" and decision.until == at("2026-12-01T13:30:00", SHANGHAI)
    assert "11:40 local is outside 09:00–11:30, 13:30–17:30" in decision.reasons
    assert decision.rules[0] == "W-BIZ"


def test_reasons_name_the_weekday_holiday_and_month_end(profiles: Profiles) -> None:
    saturday = decision_at(profiles, at("2026-12-05T10:00:00", SHANGHAI), invoice__due_date="2026-12-07")
    assert saturday.reasons[0] == "Saturday"
    national_day = decision_at(profiles, at("2026-10-02T10:00:00", SHANGHAI), invoice__due_date="2026-10-09")
    assert national_day.reasons[0] == "public holiday: National Day"
    assert national_day.until == at("2026-10-08T09:00:00", SHANGHAI)
    month_end = decision_at(profiles, at("2026-12-30T10:00:00", SHANGHAI), invoice__due_date="2027-01-04")
    assert month_end.reasons[0] == "last 2 days of the month"
    assert month_end.until == at("2027-01-04T09:00:00", SHANGHAI), "1 Jan is a holiday, 2-3 Jan a weekend"


def test_window_end_closes_the_current_interval(profiles: Profiles) -> None:
    decision = decision_at(profiles, at("2026-12-01T14:00:00", SHANGHAI), invoice__due_date="2026-12-01")
    assert decision.action == "send"
    assert decision.window_end == at("2026-12-01T17:30:00", SHANGHAI)


def test_holidays_follow_the_debtor_country_and_subdivision(profiles: Profiles) -> None:
    # 4 July is a US holiday, not a Chinese one; Patriots' Day (20 Apr 2026) only in Massachusetts.
    us = {"debtor__country": "US", "debtor__timezone": "America/New_York", "debtor__phone": "+16175550123",
          "profile": "us-b2b", "invoice__due_date": "2026-07-06"}
    friday_july_3 = decision_at(profiles, at("2026-07-03T10:00:00", "America/New_York"), **us)
    assert friday_july_3.action == "defer" and "public holiday" in friday_july_3.reasons[0]
    patriots = at("2026-04-20T10:00:00", "America/New_York")
    us["invoice__due_date"] = "2026-04-20"
    assert decision_at(profiles, patriots, **us).action == "send"
    assert decision_at(profiles, patriots, debtor__subdivision="MA", **us).action == "defer"


def test_us_consumer_profile_allows_weekends_and_evenings_until_21(profiles: Profiles) -> None:
    consumer = {"profile": "us-consumer-3p", "debtor__country": "US", "debtor__timezone": "America/Chicago",
                "debtor__phone": "+13125550187", "debtor__kind": "person", "invoice__due_date": "2026-12-05"}
    assert decision_at(profiles, at("2026-12-05T20:59:00", "America/Chicago"), **consumer).action == "send"
    late = decision_at(profiles, at("2026-12-05T21:00:00", "America/Chicago"), **consumer)
    assert late.action == "skip" or late.until == at("2026-12-06T08:00:00", "America/Chicago")


def test_spring_forward_new_york(profiles: Profiles) -> None:
    consumer = {"profile": "us-consumer-1p", "debtor__country": "US", "debtor__timezone": "America/New_York",
                "debtor__phone": "+12125550143", "invoice__due_date": "2026-03-08"}
    # 8 March 2026: clocks jump from 02:00 EST to 03:00 EDT.
    early = decision_at(profiles, at("2026-03-08T07:59:00-04:00"), **consumer)
    assert early.action == "defer" and early.until == at("2026-03-08T08:00:00-04:00")
    assert decision_at(profiles, at("2026-03-08T08:00:00-04:00"), **consumer).action == "send"
    # The same UTC instant a day earlier is 07:00 EST: not yet.
    before = decision_at(profiles, at("2026-03-07T12:00:00+00:00"), **consumer)
    assert before.action == "defer" and before.until == at("2026-03-07T08:00:00-05:00")


def test_fall_back_london(profiles: Profiles) -> None:
    job = {"debtor__country": "GB", "debtor__timezone": "Europe/London", "debtor__phone": "+447911123456",
           "invoice__due_date": "2026-10-26"}
    # Sunday 25 Oct 2026 BST ends; Monday 26 Oct 09:00 is GMT (UTC+0).
    decision = decision_at(profiles, at("2026-10-24T12:00:00+01:00"), **job)
    assert decision.action == "defer" and decision.until == at("2026-10-26T09:00:00+00:00")
    assert decision.until.utcoffset() == timedelta(0)


def test_a_start_in_a_skipped_hour_moves_forward_and_an_end_in_a_repeated_hour_keeps_the_earlier() -> None:
    zone = ZoneInfo("America/New_York")
    calendar = Calendar([Window(id="W-NIGHT", hours=(("02:30", "05:00"),))])
    # 8 Mar 2026 02:30 does not exist; the window opens at 03:30 EDT (the later reading).
    [spring] = calendar.day(zone, at("2026-03-08T00:00:00").date(), "US", None)
    assert spring.start == at("2026-03-08T03:30:00-04:00")
    closing = Calendar([Window(id="W-NIGHT", hours=(("00:00", "01:30"),))])
    # 1 Nov 2026 01:30 happens twice; the window closes at the first (EDT) one.
    [fall] = closing.day(zone, at("2026-11-01T00:00:00").date(), "US", None)
    assert fall.end == at("2026-11-01T01:30:00-04:00")
    opening = Calendar([Window(id="W-NIGHT", hours=(("01:30", "04:00"),))])
    # ...and one that opens at 01:30 opens at the second (EST) one.
    [fall_open] = opening.day(zone, at("2026-11-01T00:00:00").date(), "US", None)
    assert fall_open.start == at("2026-11-01T01:30:00-05:00")


def test_eastern_area_code_with_pacific_address_allows_11_to_21_eastern(profiles: Profiles) -> None:
    consumer = {"profile": "us-consumer-3p", "debtor__country": "US", "debtor__timezone": "America/Los_Angeles",
                "debtor__phone": "+12125550143", "debtor__kind": "person", "invoice__due_date": "2026-12-02"}
    ten_eastern = decision_at(profiles, at("2026-12-02T10:59:00-05:00"), **consumer)
    assert ten_eastern.action == "defer" and ten_eastern.until == at("2026-12-02T11:00:00-05:00").astimezone(
        ZoneInfo("America/Los_Angeles"))
    assert set(ten_eastern.zones) == {"America/Los_Angeles", "America/New_York"}
    assert "W-TZ" in ten_eastern.rules
    ok = decision_at(profiles, at("2026-12-02T20:59:00-05:00"), **consumer)
    assert ok.action == "send" and ok.window_end == at("2026-12-02T21:00:00-05:00")


def test_the_default_profile_trusts_a_stated_zone_over_the_phone(profiles: Profiles) -> None:
    decision = decision_at(profiles, at("2026-12-02T09:00:00-08:00"), debtor__timezone="America/Los_Angeles",
                           debtor__phone="+12125550143", debtor__country="US", invoice__due_date="2026-12-02")
    assert decision.action == "send" and decision.zones == ("America/Los_Angeles",)


def test_without_a_timezone_phone_zones_then_country_zones_are_intersected(profiles: Profiles) -> None:
    assert [z.key for z in candidate_zones(None, "+8613800138000", "CN", False)] == [SHANGHAI]
    assert [z.key for z in candidate_zones(None, None, "CN", False)] == ["Asia/Shanghai", "Asia/Urumqi"]
    # Urumqi is two hours behind: 09:00 there is 11:00 in Shanghai, so only 11:00-11:30 Shanghai is left.
    decision = decision_at(profiles, at("2026-12-01T09:00:00", SHANGHAI), debtor__timezone=None,
                           debtor__phone=None, invoice__due_date="2026-12-01", debtor__preferred_channel=None)
    assert decision.action == "defer" and decision.until == at("2026-12-01T11:00:00", SHANGHAI)
    sent = decision_at(profiles, at("2026-12-01T11:10:00", SHANGHAI), debtor__timezone=None,
                       debtor__phone=None, invoice__due_date="2026-12-01")
    assert sent.action == "send" and sent.window_end == at("2026-12-01T11:30:00", SHANGHAI)


def test_a_non_geographic_number_adds_no_zones() -> None:
    assert candidate_zones(None, "+15005550006", "US", True) == candidate_zones(None, None, "US", True)
    assert [z.key for z in candidate_zones("America/Denver", "+15005550006", "US", True)] == ["America/Denver"]


def test_no_candidate_zone_skips_with_tz_unknown(profiles: Profiles) -> None:
    decision = decision_at(profiles, at("2026-12-01T10:00:00+08:00"), debtor__timezone=None, debtor__phone=None,
                           debtor__country="BV")
    assert decision.action == "skip" and decision.rules == ("TZ_UNKNOWN",)


def test_zones_whose_windows_never_overlap_skip_rather_than_guess(profiles: Profiles) -> None:
    # All of the US (Hawaii to Maine) with business hours: no instant is 09:00-11:30 everywhere.
    decision = decision_at(profiles, at("2026-12-01T15:00:00+00:00"), debtor__timezone=None, debtor__phone=None,
                           debtor__country="US", profile="us-b2b", invoice__due_date="2026-12-01")
    assert decision.action == "skip"
    assert "no permitted time in every candidate zone" in decision.reasons[-1]
    assert "W-TZ" in decision.rules
