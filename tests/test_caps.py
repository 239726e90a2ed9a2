"""Cap arithmetic on its own, with profiles built directly so no other cap can mask one."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from conftest import at, facts

from schedules.caps import blocked
from schedules.loader import Profiles
from schedules.profile import Profile

SH = ZoneInfo("Asia/Shanghai")


def only_caps_of(profiles: Profiles, name: str, rule: str) -> Profile:
    source = profiles[name]
    return Profile(f"{name}:{rule}", "", (), source.windows, tuple(c for c in source.caps if c.id == rule),
                   tuple(c for c in source.cooldowns if c.id == rule), source.ladder, False, False)


def dial(when: str, outcome: str, address: str | None = "+8613800138000") -> dict[str, str | None]:
    return {"invoice_id": "INV-1", "channel": "voice", "at": when, "outcome": outcome, "address": address}


def test_china_fi_three_connected_calls_per_debtor_per_day(profiles: Profiles) -> None:
    profile = only_caps_of(profiles, "cn-fi-consumer", "F-CN-CALLS")
    now = at("2026-12-02T15:00:00+08:00")
    connected = [dial(f"2026-12-02T{h}:00:00+08:00", o) for h, o in (("09", "conversation"), ("10", "voicemail"))]
    known = facts(attempts=connected + [dial("2026-12-02T11:00:00+08:00", "no-answer")])
    assert blocked(profile, "voice", known.attempts, "INV-2", "+8613900139000", now, SH) is None
    third = facts(attempts=connected + [dial("2026-12-02T11:00:00+08:00", "conversation", "+8613900139000")])
    block = blocked(profile, "voice", third.attempts, "INV-2", "+8613800138000", now, SH)
    assert block is not None and block.rule == "F-CN-CALLS"
    assert block.until == at("2026-12-03T00:00:00+08:00")
    assert "3 connected attempts for this debtor today (at most 3)" in block.reason
    yesterday = facts(attempts=[dial("2026-12-01T23:59:00+08:00", "conversation")] * 3)
    assert blocked(profile, "voice", yesterday.attempts, "INV-1", None, now, SH) is None


def test_china_fi_six_unanswered_dials_per_number_per_day(profiles: Profiles) -> None:
    profile = only_caps_of(profiles, "cn-fi-consumer", "F-CN-CALLS")
    now = at("2026-12-02T16:00:00+08:00")
    six = [dial(f"2026-12-02T{9 + i:02d}:00:00+08:00", "busy") for i in range(6)]
    block = blocked(profile, "voice", facts(attempts=six).attempts, "INV-1", "+8613800138000", now, SH)
    assert block is not None and "6 unanswered attempts to this address today" in block.reason
    # Another number of the same debtor is not capped by these dials...
    assert blocked(profile, "voice", facts(attempts=six).attempts, "INV-1", "+8613900139000", now, SH) is None
    # ...but dials whose number is not recorded count against every number.
    unknown = [dial(f"2026-12-02T{9 + i:02d}:00:00+08:00", "busy", None) for i in range(6)]
    assert blocked(profile, "voice", facts(attempts=unknown).attempts, "INV-1", "+8613900139000", now, SH)


def test_rolling_windows_release_when_enough_attempts_have_aged_out(profiles: Profiles) -> None:
    profile = only_caps_of(profiles, "us-consumer-3p", "F-CALL-7IN7")
    first = at("2026-12-01T09:00:00-06:00")
    calls = [dial(str(first + timedelta(hours=12 * i)).replace(" ", "T"), "no-answer") for i in range(9)]
    now = first + timedelta(hours=12 * 8, minutes=1)
    block = blocked(profile, "voice", facts(attempts=calls).attempts, "INV-1", None, now, ZoneInfo("America/Chicago"))
    # 9 calls in the window, limit 7: the third-oldest must age out before an eighth is allowed.
    assert block is not None and block.until == first + timedelta(hours=24) + timedelta(days=7)


def test_other_debts_do_not_count_for_per_debt_caps(profiles: Profiles) -> None:
    profile = only_caps_of(profiles, "us-consumer-3p", "F-CALL-7IN7")
    now = at("2026-12-05T12:00:00-06:00")
    calls = [dial(f"2026-12-0{d}T10:00:00-06:00", "busy") for d in range(1, 5)] * 2
    assert blocked(profile, "voice", facts(attempts=calls).attempts, "INV-OTHER", None, now,
                   ZoneInfo("America/Chicago")) is None
    assert blocked(profile, "voice", facts(attempts=calls).attempts, "INV-1", None, now,
                   ZoneInfo("America/Chicago")) is not None
