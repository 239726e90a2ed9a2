"""`schedules.reach`: whether a person may contact the debtor now, and by which channel —
the same rules `decide` applies (the window in the debtor's zone, consent, opt-outs,
caps), for the operator working an escalation."""

from __future__ import annotations

from conftest import at, facts, make_job

from schedules import Profiles
from schedules.reach import reach


def test_inside_the_window_each_channel_says_whether_it_may_be_used(profiles: Profiles) -> None:
    job = make_job()  # Shanghai; consent: email and sms, not voice
    found = reach(job, at("2026-12-02T10:00:00", "Asia/Shanghai"), facts(), profiles["default"])
    assert found.open and found.open_until is not None and found.opens_at is None
    assert [z.key for z in found.zones] == ["Asia/Shanghai"]
    said = {c.channel: (c.allowed, c.reason) for c in found.channels}
    assert said["email"] == (True, "within the contact window") and said["sms"][0] is True
    assert said["voice"] == (False, "no consent")


def test_on_a_saturday_nothing_may_be_used_and_it_says_when_it_opens(profiles: Profiles) -> None:
    job = make_job()
    found = reach(job, at("2026-12-05T10:00:00", "Asia/Shanghai"), facts(), profiles["default"])
    assert not found.open and found.opens_at is not None
    assert found.opens_at.astimezone(found.zones[0]).strftime("%a %H") == "Mon 09"
    assert any("Saturday" in reason for reason in found.closed), found.closed
    assert all(not c.allowed for c in found.channels)
    assert {c.reason for c in found.channels if c.channel != "voice"} == {"outside the contact window"}


def test_an_opted_out_address_is_not_a_way_to_reach_them(profiles: Profiles) -> None:
    job = make_job()
    known = facts(suppressed_addresses=["zhang.wei@example.com"])
    found = reach(job, at("2026-12-02T10:00:00", "Asia/Shanghai"), known, profiles["default"])
    assert {c.channel: c.reason for c in found.channels}["email"] == "email address opted out"
