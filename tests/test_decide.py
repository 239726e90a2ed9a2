"""`decide`: suppressions, the ladder, the channel plan, caps and escalation, in that order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import at, facts, make_job

from schedules import Decision, Profiles, decide
from schedules.facts import NOTHING_KNOWN, Facts

SH = "Asia/Shanghai"
WEDNESDAY = at("2026-12-02T10:00:00", SH)  # a permitted instant for the default profile


def run(profiles: Profiles, when: datetime = WEDNESDAY, known: Facts = NOTHING_KNOWN, **changes: Any) -> Decision:
    job = make_job(**changes)
    return decide(job, when, known, profiles[job.profile])


def due_in(days: int) -> str:
    """A due date `days` after the Wednesday the tests decide on (negative: overdue)."""
    return str(WEDNESDAY.date() + timedelta(days=days))


ALL_CONSENT = {"email": True, "sms": True, "voice": True}


@pytest.mark.parametrize(("dpd", "stage", "channel"), [
    (-7, "pre_due_7", "email"), (-4, "pre_due_7", "email"),
    (-3, "pre_due_3", "sms"), (-1, "pre_due_3", "sms"), (0, "due_day", "sms"),
    (1, "overdue_early", "voice"), (7, "overdue_early", "voice"),
    (8, "overdue_late", "voice"), (14, "overdue_late", "voice"),
])
def test_the_ladder_by_days_past_due(profiles: Profiles, dpd: int, stage: str, channel: str) -> None:
    decision = run(profiles, invoice__due_date=due_in(-dpd), debtor__consent=ALL_CONSENT,
                   debtor__preferred_channel=None)
    assert (decision.action, decision.stage, decision.channel, decision.template) == ("send", stage, channel, stage)
    assert decision.at == WEDNESDAY and decision.zones == (SH,)


def test_the_contract_example_reason(profiles: Profiles) -> None:
    decision = run(profiles, invoice__due_date=due_in(0), debtor__preferred_channel=None)
    assert decision.reasons == ("stage due_day: sms then email",)
    assert decision.to_json() == {
        "action": "send", "channel": "sms", "stage": "due_day", "template": "due_day",
        "at": "2026-12-02T10:00:00+08:00", "window_end": "2026-12-02T11:30:00+08:00",
        "reasons": ["stage due_day: sms then email"], "rules": ["W-BIZ", "W-LEGAL"], "zones": [SH]}


def test_too_early_defers_to_the_first_permitted_instant_of_day_minus_7(profiles: Profiles) -> None:
    decision = run(profiles, invoice__due_date=due_in(12))  # day -7 is Mon 7 Dec
    assert decision.action == "defer" and decision.until == at("2026-12-07T09:00:00", SH)
    assert decision.stage == "pre_due_7" and decision.rules == ("LADDER",)
    weekend = run(profiles, invoice__due_date=due_in(10))  # day -7 is Sat 5 Dec → Mon 7 Dec 09:00
    assert weekend.until == at("2026-12-07T09:00:00", SH)


def test_fifteen_days_overdue_escalates_without_a_message(profiles: Profiles) -> None:
    decision = run(profiles, invoice__due_date=due_in(-15))
    assert decision.action == "escalate" and decision.channel is None
    assert decision.to_json()["action"] == "escalate"


def test_preferred_channel_moves_to_the_front_only_when_in_the_plan(profiles: Profiles) -> None:
    email_first = run(profiles, invoice__due_date=due_in(0), debtor__preferred_channel="email")
    assert email_first.channel == "email"
    assert email_first.reasons[0] == "stage due_day: email then sms (email preferred)"
    voice = run(profiles, invoice__due_date=due_in(0), debtor__preferred_channel="voice",
                debtor__consent=ALL_CONSENT)
    assert voice.channel == "sms", "voice is not in the due_day plan"


def test_unconsented_and_addressless_channels_are_not_in_the_plan(profiles: Profiles) -> None:
    no_sms = run(profiles, invoice__due_date=due_in(0), debtor__preferred_channel=None,
                 debtor__consent={"email": True, "sms": False})
    assert no_sms.channel == "email" and "S-CONSENT" in no_sms.rules and "sms: no consent" in no_sms.reasons
    no_phone = run(profiles, invoice__due_date=due_in(-3), debtor__phone=None, debtor__consent=ALL_CONSENT)
    assert no_phone.channel == "email" and "voice: no phone number" in no_phone.reasons
    nothing = run(profiles, invoice__due_date=due_in(-3), debtor__consent={"email": False, "voice": False})
    assert nothing.action == "skip" and nothing.reasons[-1] == "no usable channel"


def test_suppressed_addresses_and_media_are_skipped(profiles: Profiles) -> None:
    known = facts(suppressed_addresses=["+8613800138000"])
    decision = run(profiles, known=known, invoice__due_date=due_in(0), debtor__preferred_channel=None)
    assert decision.channel == "email" and "S-OPTOUT" in decision.rules and "sms: phone number opted out" in \
        decision.reasons
    invalid = run(profiles, known=facts(invalid_addresses=["+8613800138000"]), invoice__due_date=due_in(0),
                  debtor__preferred_channel=None)
    assert invalid.channel == "email" and "S-INVALID" in invalid.rules
    failed = run(profiles, known=facts(failed_channels=["sms"]), invoice__due_date=due_in(0),
                 debtor__preferred_channel=None)
    assert failed.channel == "email" and "FAILED" in failed.rules
    medium = run(profiles, known=facts(suppressed_channels=["sms"]), invoice__due_date=due_in(0),
                 debtor__preferred_channel=None)
    assert medium.channel == "email" and "S-MEDIUM" in medium.rules


@pytest.mark.parametrize(("known", "action", "rule"), [
    ({"paid": True}, "skip", "S-PAID"), ({"disputed": True}, "skip", "S-DISPUTE"),
    ({"paid": True, "promised_until": "2026-12-10"}, "skip", "S-PAID"),
    ({"written_off": True}, "skip", "S-WRITTEN-OFF"),
])
def test_paid_written_off_and_disputed_invoices_get_nothing(profiles: Profiles, known: dict, action: str,
                                                           rule: str) -> None:
    decision = run(profiles, known=facts(**known), invoice__due_date=due_in(0))
    assert (decision.action, decision.rules) == (action, (rule,))


def test_a_promise_pauses_until_the_day_after_it(profiles: Profiles) -> None:
    decision = run(profiles, known=facts(promised_until="2026-12-03"), invoice__due_date=due_in(-2))
    assert decision.action == "defer" and decision.until == at("2026-12-04T09:00:00", SH)
    assert decision.rules == ("S-PROMISE",)
    on_the_day = run(profiles, known=facts(promised_until="2026-12-02"), invoice__due_date=due_in(-2))
    assert on_the_day.until == at("2026-12-03T09:00:00", SH)
    lapsed = run(profiles, known=facts(promised_until="2026-12-01"), invoice__due_date=due_in(-2))
    assert lapsed.action == "send"


def test_cease_stops_consumer_profiles_only(profiles: Profiles) -> None:
    consumer = {"profile": "us-consumer-3p", "debtor__country": "US", "debtor__timezone": "America/Chicago",
                "debtor__phone": "+13125550187", "invoice__due_date": "2026-12-01"}
    noon = at("2026-12-02T12:00:00", "America/Chicago")
    assert run(profiles, noon, facts(ceased=True), **consumer).rules == ("S-CEASE",)
    business = run(profiles, known=facts(ceased=True), invoice__due_date=due_in(0))
    assert business.action == "send"


def call(day: str, outcome: str = "no-answer", stage: str = "overdue_early", invoice: str = "INV-2026-0042",
         **extra: str) -> dict[str, str]:
    return {"invoice_id": invoice, "channel": "voice", "stage": stage, "at": day, "outcome": outcome, **extra}


def test_three_unanswered_calls_in_a_stage_escalate(profiles: Profiles) -> None:
    attempts = [call("2026-11-27T10:00:00+08:00", "busy"), call("2026-11-30T10:00:00+08:00"),
                call("2026-12-01T10:00:00+08:00", "voicemail")]
    decision = run(profiles, known=facts(attempts=attempts), invoice__due_date=due_in(-3),
                   debtor__consent=ALL_CONSENT)
    assert decision.action == "escalate" and decision.rules == ("F-LADDER",)
    assert decision.reasons == ("3 unanswered calls in stage overdue_early",)
    talked = attempts[:2] + [call("2026-12-01T10:00:00+08:00", "conversation")]
    assert run(profiles, known=facts(attempts=talked), invoice__due_date=due_in(-3),
               debtor__consent=ALL_CONSENT).action == "send"
    other_stage = attempts[:2] + [call("2026-11-20T10:00:00+08:00", stage="pre_due_3")]
    assert run(profiles, known=facts(attempts=other_stage), invoice__due_date=due_in(-3),
               debtor__consent=ALL_CONSENT).action == "send"


def test_house_cap_one_call_a_day_moves_to_the_next_channel(profiles: Profiles) -> None:
    known = facts(attempts=[call("2026-12-02T09:10:00+08:00", invoice="INV-OTHER")])
    decision = run(profiles, known=known, invoice__due_date=due_in(-3), debtor__consent=ALL_CONSENT,
                   debtor__preferred_channel=None)
    assert decision.action == "send" and decision.channel == "email"
    assert "F-HOUSE" in decision.rules
    assert any("1 attempts for this debtor today (at most 1)" in r for r in decision.reasons)


def test_a_capped_plan_defers_until_the_cap_lifts(profiles: Profiles) -> None:
    sms_today = {"invoice_id": "INV-2026-0042", "channel": "sms", "at": "2026-12-02T09:05:00+08:00",
                 "outcome": "delivered"}
    email_today = {**sms_today, "channel": "email"}
    decision = run(profiles, known=facts(attempts=[sms_today, email_today]), invoice__due_date=due_in(0))
    assert decision.action == "defer" and decision.until == at("2026-12-03T09:00:00", SH)
    assert decision.rules[0] == "F-HOUSE"


def test_three_sms_in_seven_days_defers_until_the_oldest_leaves(profiles: Profiles) -> None:
    texts = [{"invoice_id": "INV-2026-0042", "channel": "sms", "at": f"2026-11-{d}T10:00:00+08:00",
              "outcome": "delivered"} for d in (26, 27, 30)]
    decision = run(profiles, known=facts(attempts=texts), invoice__due_date=due_in(0),
                   debtor__consent={"email": False, "sms": True})
    # The 26 Nov 10:00 text leaves the 7-day window on 3 Dec 10:00.
    assert decision.action == "defer" and decision.until == at("2026-12-03T10:00:00", SH)


US3P = {"profile": "us-consumer-3p", "debtor__country": "US", "debtor__timezone": "America/Chicago",
        "debtor__phone": "+13125550187", "debtor__kind": "person", "debtor__consent": ALL_CONSENT,
        "debtor__preferred_channel": None, "invoice__due_date": "2026-11-28"}


def test_the_eighth_call_in_seven_days_is_deferred_for_us_consumers(profiles: Profiles) -> None:
    eleven = at("2026-12-03T11:00:00", "America/Chicago")
    calls = [call(f"2026-11-{day}T12:00:00-06:00", "busy" if day % 2 else "no-answer", stage=f"s{day}")
             for day in range(26, 31)] + [call("2026-12-01T12:00:00-06:00", stage="x"),
                                          call("2026-12-02T12:00:00-06:00", stage="y")]
    only_voice = {**US3P, "debtor__consent": {"voice": True, "email": False}}
    decision = run(profiles, eleven, facts(attempts=calls), **only_voice)
    # Seven calls since 26 Nov 12:00: the eighth waits until that one is 7×24 h old.
    assert decision.action == "defer" and decision.until == at("2026-12-03T12:00:00", "America/Chicago")
    assert decision.rules[0] == "F-CALL-7IN7"
    assert "voice: 7 attempts for this debt in 7 days (at most 7)" in decision.reasons
    with_email = run(profiles, eleven, facts(attempts=calls), **US3P)
    assert with_email.action == "send" and with_email.channel == "email"


def test_no_call_for_seven_days_after_a_conversation(profiles: Profiles) -> None:
    talk = [call("2026-11-30T15:00:00-06:00", "conversation")]
    only_voice = {**US3P, "debtor__consent": {"voice": True, "email": False}}
    blocked = run(profiles, at("2026-12-06T12:00:00", "America/Chicago"), facts(attempts=talk), **only_voice)
    assert blocked.action == "defer" and blocked.until == at("2026-12-07T08:00:00", "America/Chicago")
    assert "F-CALL-7IN7" in blocked.rules


def test_massachusetts_allows_two_phone_contacts_a_week(profiles: Profiles) -> None:
    ma = {**US3P, "profile": "us-ma", "debtor__timezone": "America/New_York", "debtor__phone": "+16175550123",
          "debtor__consent": {"voice": True, "sms": True, "email": False}, "invoice__due_date": "2026-11-20"}
    two = [call("2026-11-28T12:00:00-05:00"), {"invoice_id": "INV-2026-0042", "channel": "sms",
                                               "at": "2026-11-30T12:00:00-05:00", "outcome": "delivered"}]
    decision = run(profiles, at("2026-12-02T12:00:00", "America/New_York"), facts(attempts=two), **ma)
    assert decision.action == "defer" and "F-MA" in decision.rules
    assert decision.until == at("2026-12-05T12:00:00-05:00")


def test_china_fi_caps_connected_calls_per_day(profiles: Profiles) -> None:
    cn = {"profile": "cn-fi-consumer", "debtor__kind": "person", "debtor__consent": {"voice": True, "email": False},
          "invoice__due_date": due_in(-3), "debtor__preferred_channel": None}
    # The house cap (1 call/day) is stricter than F-CN-CALLS here, and both hold.
    decision = run(profiles, known=facts(attempts=[call("2026-12-02T09:00:00+08:00", "conversation",
                                                        invoice="INV-X")]), **cn)
    assert decision.action == "defer" and decision.until == at("2026-12-03T09:00:00", SH)
    assert {"F-HOUSE", "F-CN-CALLS"} >= set(decision.rules) - {"S-CONSENT"}


def test_explicit_stage_waits_for_its_day_and_is_skipped_once_over(profiles: Profiles) -> None:
    early = run(profiles, stage="due_day", invoice__due_date=due_in(5))
    assert early.action == "defer" and early.until == at("2026-12-07T09:00:00", SH)
    late = run(profiles, stage="due_day", invoice__due_date=due_in(-2))
    assert late.action == "skip" and late.reasons[0].startswith("stage due_day ended on 2026-11-30")


def test_now_must_be_aware(profiles: Profiles) -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(make_job(), datetime(2026, 12, 2, 10), NOTHING_KNOWN, profiles["default"])


def test_attempts_in_the_future_do_not_count(profiles: Profiles) -> None:
    later = [call("2026-12-02T15:00:00+08:00", invoice="INV-OTHER")]
    decision = run(profiles, known=facts(attempts=later), invoice__due_date=due_in(-3), debtor__consent=ALL_CONSENT,
                   debtor__preferred_channel=None)
    assert decision.channel == "voice"
