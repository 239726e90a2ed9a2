"""The cadence planner: every step of the ladder, at permitted instants, pre-due steps never late."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from conftest import at, facts, job_data, make_job
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules import Profiles, decide
from schedules.cadence import plan
from worker.jobs.parse import parse_job

SHANGHAI = ZoneInfo("Asia/Shanghai")


def registered(due: str, **changes: object):  # type: ignore[no-untyped-def]
    return make_job(invoice__due_date=due, job_id="INV-1/cadence", cadence="default", stage=None, **changes)


def test_the_default_ladder_has_its_steps_on_their_days(profiles: Profiles) -> None:
    job = registered("2026-12-08")  # a Tuesday
    steps = plan(job, at("2026-11-16T10:00:00+08:00"), profiles["default"])
    by_id = {s.job_id("INV-1"): s for s in steps}
    assert by_id["INV-1/pre_due_7/1"].at == at("2026-12-01T09:00:00+08:00")
    assert by_id["INV-1/due_day/1"].at == at("2026-12-08T09:00:00+08:00")
    assert [s.day for s in steps if s.stage == "overdue_early"] == [
        date(2026, 12, 9), date(2026, 12, 11), date(2026, 12, 13), date(2026, 12, 15)]
    assert by_id["INV-1/overdue_early/3"].at == at("2026-12-14T09:00:00+08:00"), "Sunday's step moves to Monday"
    assert "INV-1/overdue_late/4" not in by_id and "INV-1/overdue_late/5" not in by_id, (
        "weekend steps of a daily stage merge into Monday's own step")
    assert by_id["INV-1/escalated/1"].day == date(2026, 12, 23)


def test_a_pre_due_step_on_a_closed_day_moves_earlier_not_later(profiles: Profiles) -> None:
    job = registered("2026-12-08")
    step = next(s for s in plan(job, at("2026-11-16T10:00:00+08:00"), profiles["default"]) if s.stage == "pre_due_3")
    assert step.day == date(2026, 12, 5)  # a Saturday
    assert step.at == at("2026-12-04T09:00:00+08:00") and step.not_before == date(2026, 12, 4)
    staged = make_job(invoice__due_date="2026-12-08", stage="pre_due_3", not_before="2026-12-04")
    decision = decide(staged, step.at, facts(), profiles["default"])
    assert decision.action == "send" and decision.stage == "pre_due_3"
    without = make_job(invoice__due_date="2026-12-08", stage="pre_due_3")
    assert decide(without, step.at, facts(), profiles["default"]).action == "defer", "not_before is what allows it"


def test_steps_already_past_are_dropped_and_a_running_stage_starts_today(profiles: Profiles) -> None:
    job = registered("2026-12-08")
    steps = plan(job, at("2026-12-07T15:00:00+08:00"), profiles["default"])  # Monday, dpd -1
    assert steps[0].stage == "pre_due_3" and steps[0].at == at("2026-12-07T15:00:00+08:00")
    assert all(s.stage != "pre_due_7" for s in steps)


def test_a_cadence_job_is_checked(profiles: Profiles) -> None:
    bad = parse_job(job_data(cadence="nope", stage=None), profiles)
    assert any(e.startswith("cadence: 'nope' is not a profile") for e in bad.errors)
    staged = parse_job(job_data(cadence="default", stage="due_day"), profiles)
    assert "stage: a registered cadence plans every stage itself: leave stage out" in staged.errors
    early = parse_job(job_data(not_before="2026-11-20", stage=None), profiles)
    assert "not_before: not_before applies to a staged reminder: give stage too" in early.errors


@settings(max_examples=60, deadline=None)
@given(due=st.dates(date(2026, 1, 1), date(2028, 12, 31)), lead=st.integers(-20, 30),
       hour=st.integers(0, 23), profile=st.sampled_from(["default", "cn-commercial", "us-b2b", "eu"]))
def test_every_step_is_permitted_and_pre_due_steps_come_before_the_due_date(
        profiles: Profiles, due: date, lead: int, hour: int, profile: str) -> None:
    tz = {"default": "Asia/Shanghai", "cn-commercial": "Asia/Shanghai", "us-b2b": "America/Chicago",
          "eu": "Europe/Berlin"}[profile]
    country = {"Asia/Shanghai": "CN", "America/Chicago": "US", "Europe/Berlin": "DE"}[tz]
    job = make_job(invoice__due_date=due.isoformat(), cadence=profile, profile=profile, stage=None,
                   debtor__timezone=tz, debtor__country=country, debtor__phone=None)
    zone = ZoneInfo(tz)
    now = datetime.combine(due - timedelta(days=lead), datetime.min.time(), zone) + timedelta(hours=hour)
    ladder = profiles[profile].ladder
    steps = plan(job, now, profiles[profile])
    ids = [s.job_id("I") for s in steps]
    assert len(ids) == len(set(ids))
    for step in steps:
        stage = ladder.stage(step.stage)
        assert stage is not None and step.at >= now
        if stage.action == "escalate":
            continue
        staged = job.model_copy(update={"stage": step.stage, "not_before": step.not_before, "cadence": None})
        decision = decide(staged, step.at, facts(), profiles[profile])
        if stage.to_dpd is not None and stage.to_dpd < 0:
            assert step.at.astimezone(zone).date() < due, "a pre-due step never lands on or after the due date"
        assert decision.action == "send", (step, decision)
