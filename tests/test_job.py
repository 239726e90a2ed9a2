"""The job contract, version 1: what billing engineers may send, and the errors they get."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from conftest import SAMPLE, job_data, make_job

from worker.jobs.parse import parse_job
from worker.policy import profiles


def errors_of(data: object) -> list[str]:
    result = parse_job(data, profiles(None))
    assert result.job is None, "expected the job to be rejected"
    return result.errors


def test_the_design_sample_is_valid_and_typed() -> None:
    job = make_job()
    assert job.invoice.amount_due == Decimal("12800.00")
    assert job.invoice.due_date == date(2026, 12, 1)
    assert job.debtor.consent.voice is False
    assert job.debtor.kind == "business"
    assert job.to_json()["invoice"]["amount_due"] == "12800.00"


def test_consent_defaults_to_email_only() -> None:
    job = make_job(debtor__consent=None)
    assert (job.debtor.consent.email, job.debtor.consent.sms, job.debtor.consent.voice) == (True, False, False)


def test_stage_and_profile_may_be_left_out() -> None:
    job = make_job(stage=None, profile=None)
    assert job.stage is None and job.profile == "default"


def test_the_phone_error_names_field_value_and_expectation() -> None:
    assert errors_of(job_data(debtor__phone="+86 138")) == [
        "debtor.phone: '+86 138' is not a valid phone number (E.164 expected, e.g. +8613800138000)"]


def test_a_real_number_with_spaces_is_refused_with_a_hint_and_masked() -> None:
    [error] = errors_of(job_data(debtor__phone="+86 138 0013 8000"))
    assert error.startswith("debtor.phone: '+86 13")
    assert "138 0013" not in error, "personal data must be masked in errors"
    assert "without spaces" in error


def test_all_errors_are_reported_at_once() -> None:
    data = job_data(debtor__phone="12345", debtor__email="not-an-email", invoice__amount_due=12.5,
                    invoice__due_date="2026-02-30", debtor__timezone="Asia/Atlantis", surprise=1)
    found = errors_of(data)
    paths = sorted(e.split(":")[0] for e in found)
    assert paths == ["debtor.email", "debtor.phone", "debtor.timezone", "invoice.amount_due", "invoice.due_date",
                     "surprise"]


def test_unknown_fields_are_rejected_not_ignored() -> None:
    assert errors_of(job_data(debtor__fax="+8610123")) == [
        "debtor.fax: unknown field (not part of the job contract, version 1)"]


@pytest.mark.parametrize("amount", [12800.0, 12800, "-1.00", "1e3", "12,800.00", "", "0x10", "NaN"])
def test_amount_must_be_a_non_negative_decimal_string(amount: object) -> None:
    [error] = errors_of(job_data(invoice__amount_due=amount))
    assert error.startswith("invoice.amount_due: ")
    assert "decimal string" in error


@pytest.mark.parametrize(("currency", "amount", "ok"), [
    ("CNY", "10.50", True), ("CNY", "10.505", False), ("JPY", "1000", True), ("JPY", "1000.5", False),
    ("BHD", "1.250", True), ("USD", "0", True)])
def test_amount_has_at_most_the_currency_minor_digits(currency: str, amount: str, ok: bool) -> None:
    result = parse_job(job_data(invoice__currency=currency, invoice__amount_due=amount), profiles(None))
    assert result.ok is ok
    if not ok:
        assert result.errors == [f"invoice.amount_due: '{amount}' has more decimals than {currency} allows "
                                 f"(at most {'0' if currency == 'JPY' else '2'})"]


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("invoice__currency", "RMB", "invoice.currency: 'RMB' is not an ISO 4217 currency code"),
    ("invoice__due_date", "01/12/2026", "invoice.due_date: '01/12/2026' is not a date (YYYY-MM-DD expected"),
    ("invoice__payment_url", "javascript:alert(1)", "invoice.payment_url: 'javascript:alert(1)' is not an http(s) URL"),
    ("debtor__locale", "klingon", "debtor.locale: 'klingon' is not a known locale"),
    ("debtor__country", "ZZ", "debtor.country: 'ZZ' is not an ISO 3166 alpha-2 country code"),
    ("debtor__timezone", "Asia/Peking", "debtor.timezone: 'Asia/Peking' is not an IANA time zone"),
    ("debtor__preferred_channel", "fax", "debtor.preferred_channel: 'fax' is not one of 'email', 'sms' or 'voice'"),
    ("debtor__kind", "robot", "debtor.kind: 'robot' is not one of 'business' or 'person'"),
    ("debtor__consent__sms", "yes", "debtor.consent.sms: expected true or false, got 'yes'"),
    ("job_id", "", "job_id: must not be empty"),
    ("job_id", "x" * 201, "job_id: 201 characters; at most 200 allowed"),
    ("profile", "lenient", "profile: 'lenient' is not a profile (known: base, cn-commercial"),
    ("stage", "final_warning", "stage: 'final_warning' is not a stage of profile 'default' (known: pre_due_7"),
    ("debtor__subdivision", "XX", "debtor.subdivision: 'XX' is not a subdivision of CN"),
    ("invoice__issued_date", "2026-12-05", "invoice.issued_date: 2026-12-05 is after due_date 2026-12-01"),
])
def test_each_field_error_says_what_was_expected(path: str, value: object, expected: str) -> None:
    [error] = errors_of(job_data(**{path: value}))
    assert error.startswith(expected)


def test_email_errors_mask_the_address() -> None:
    [error] = errors_of(job_data(debtor__email="zhang.wei@@example.com"))
    assert error.startswith("debtor.email: 'z***@example.com' is not a valid email address")


def test_missing_required_fields_are_named() -> None:
    data = job_data(debtor__name=None, invoice__due_date=None)
    assert sorted(errors_of(data)) == ["debtor.name: required field is missing",
                                       "invoice.due_date: required field is missing"]


def test_a_job_that_is_not_an_object_is_refused() -> None:
    assert errors_of([SAMPLE]) == ["(job): an array found; a job is a JSON object"]


def test_subdivisions_known_to_the_holiday_calendar_are_accepted() -> None:
    job = make_job(debtor__country="US", debtor__subdivision="CA", debtor__timezone="America/Los_Angeles",
                   debtor__phone="+14155550100")
    assert job.debtor.subdivision == "CA"


def test_only_the_services_own_copies_skip_the_address_checks() -> None:
    """The forecast reads the agenda's copy of a job intake validated (`trusted`): its
    addresses are not checked again. Anything that comes in is checked in full."""
    bad = job_data(debtor__email="not-an-address", debtor__phone="12345")
    refused = parse_job(bad, profiles(None), "intake")
    assert refused.job is None and {e.split(":")[0] for e in refused.errors} == {"debtor.email", "debtor.phone"}
    good = job_data()
    assert parse_job(good, profiles(None), "agenda", trusted=True).job == parse_job(good, profiles(None), "intake").job
