"""Profiles: what ships, how `extends` combines (strictest wins), and errors by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedules import ProfileError, Profiles
from schedules.loader import check

SHIPPED = {"default", "cn-commercial", "cn-fi-consumer", "us-consumer-3p", "us-consumer-1p", "us-b2b", "us-ma",
           "eu", "uk-conc"}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_profile_the_issue_names_ships_and_resolves(profiles: Profiles) -> None:
    assert set(profiles) >= SHIPPED
    assert check() == (sorted(profiles), [])


def test_every_profile_keeps_the_legal_floor_and_house_caps(profiles: Profiles) -> None:
    for profile in profiles.values():
        legal = [w for w in profile.windows if w.id == "W-LEGAL"]
        assert legal and legal[0].hours == ((8 * 60, 21 * 60),), profile.name
        assert {c.id for c in profile.caps} >= {"F-HOUSE"}, profile.name
        assert profile.ladder.escalate_after_unanswered_calls == 3


def test_the_default_profile_is_exactly_the_issue(profiles: Profiles) -> None:
    biz = next(w for w in profiles["default"].windows if w.id == "W-BIZ")
    assert biz.days == ("mon", "tue", "wed", "thu", "fri")
    assert biz.hours == ((9 * 60, 11 * 60 + 30), (13 * 60 + 30, 17 * 60 + 30))
    assert biz.month_end_days == 2 and biz.public_holidays
    ladder = [(s.name, s.from_dpd, s.to_dpd, s.channels, s.action) for s in profiles["default"].ladder.stages]
    assert ladder == [
        ("pre_due_7", -7, -4, ("email",), "send"),
        ("pre_due_3", -3, -1, ("sms", "email"), "send"),
        ("due_day", 0, 0, ("sms", "email"), "send"),
        ("overdue_early", 1, 7, ("voice", "email"), "send"),
        ("overdue_late", 8, 14, ("voice", "sms", "email"), "send"),
        ("escalated", 15, None, (), "escalate"),
    ]


@pytest.mark.parametrize("name", ["us-consumer-3p", "us-consumer-1p", "us-ma"])
def test_us_consumer_profiles_permit_the_legal_window_only(profiles: Profiles, name: str) -> None:
    profile = profiles[name]
    assert [w.id for w in profile.windows] == ["W-LEGAL"]
    assert profile.phone_zones_always and profile.honour_cease


def test_profiles_carry_the_compliance_caps(profiles: Profiles) -> None:
    def ids(name: str) -> set[str]:
        return {c.id for c in profiles[name].caps} | {c.id for c in profiles[name].cooldowns}
    assert "F-CALL-7IN7" in ids("us-consumer-3p")
    assert "F-MA" in ids("us-ma")
    assert "F-CN-CALLS" in ids("cn-fi-consumer")
    assert "W-BIZ" in {w.id for w in profiles["cn-commercial"].windows}


def test_extends_combines_strictest_wins(tmp_path: Path) -> None:
    write(tmp_path, "night-owl", """
description = "tries to loosen the window; cannot"
extends = ["default"]
[[windows]]
id = "W-ACME"
hours = [["07:00", "23:00"]]
[[caps]]
id = "F-ACME"
channels = ["sms"]
per = "debt"
limit = 10
within = "calendar_day"
""")
    write(tmp_path, "tight", """
description = "stricter: mornings only, one SMS a week"
extends = ["night-owl"]
[[windows]]
id = "W-ACME-AM"
hours = [["09:30", "11:00"]]
[[caps]]
id = "F-ACME-WEEK"
channels = ["sms"]
per = "debt"
limit = 1
within = "7d"
""")
    profiles = Profiles.load(tmp_path)
    tight = profiles["tight"]
    assert [w.id for w in tight.windows] == ["W-ACME-AM", "W-ACME", "W-BIZ", "W-LEGAL"]
    assert {c.id for c in tight.caps} == {"F-ACME-WEEK", "F-ACME", "F-HOUSE"}
    # W-ACME would allow 07:00-23:00, but every window must permit: the legal floor still binds.
    assert {w.id for w in profiles["night-owl"].windows} >= {"W-LEGAL", "W-BIZ"}


def test_an_operator_cannot_replace_a_shipped_profile(tmp_path: Path) -> None:
    write(tmp_path, "default", 'description = "anything goes"\n')
    with pytest.raises(ProfileError) as caught:
        Profiles.load(tmp_path)
    assert "a shipped profile is named 'default'" in str(caught.value)


def test_bad_keys_are_reported_with_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "broken", """description = "broken on purpose"
extends = ["default"]

[[windows]]
id = "W-ONE"
hours = [["09:00", "12:00"]]

[[windows]]
id = "W-TWO"
hours = [["25:00", "26:00"]]
days = ["mon", "funday"]

[[caps]]
id = "F-X"
channels = ["pigeon"]
per = "debt"
limit = 0
within = "fortnight"
""")
    names, problems = check(tmp_path)
    assert "broken" not in names
    found = {(p.path, p.line, p.key) for p in problems}
    assert (path, 10, "windows[1].hours[0][0]") in found
    assert (path, 11, "windows[1].days[1]") in found
    assert (path, 15, "caps[0].channels[0]") in found
    assert (path, 17, "caps[0].limit") in found
    assert (path, 18, "caps[0].within") in found
    text = "\n".join(str(p) for p in problems)
    assert f"{path}:10: windows[1].hours[0][0]: '25:00' is not a clock time" in text
    assert f"{path}:18: caps[0].within: 'fortnight' is not a period" in text


def test_toml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "typo", 'description = "x"\n\n[[windows]\nid = "W-X"\n')
    _, problems = check(tmp_path)
    assert problems[0].path == path and problems[0].line == 3
    assert "not valid TOML" in problems[0].message


def test_unknown_parents_and_cycles_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "orphan", 'description = "x"\nextends = ["nowhere"]\n')
    write(tmp_path, "chicken", 'description = "x"\nextends = ["egg"]\n')
    write(tmp_path, "egg", 'description = "x"\nextends = ["chicken"]\n')
    names, problems = check(tmp_path)
    assert not {"orphan", "chicken", "egg"} & set(names)
    text = "\n".join(str(p) for p in problems)
    assert "orphan.toml:2: extends: no profile named 'nowhere'" in text
    assert "cycle: chicken → egg → chicken" in text


def test_overlapping_ladder_stages_and_reversed_hours_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "muddled", """description = "x"
[[windows]]
id = "W-BACKWARDS"
hours = [["17:00", "09:00"]]
[ladder]
[[ladder.stages]]
name = "first"
from_dpd = 0
to_dpd = 5
channels = ["email"]
[[ladder.stages]]
name = "second"
from_dpd = 3
to_dpd = 9
channels = ["email"]
""")
    _, problems = check(tmp_path)
    text = "\n".join(str(p) for p in problems)
    assert "muddled.toml:2: windows[0]: hours: 17:00–09:00 ends before it starts" in text
    assert "muddled.toml:5: ladder: stages: second overlaps first" in text


def test_a_missing_operator_directory_is_a_problem(tmp_path: Path) -> None:
    _, problems = check(tmp_path / "absent")
    assert problems and "does not exist" in problems[0].message
