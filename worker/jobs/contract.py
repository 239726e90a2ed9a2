"""The reminder job, version 1: the contract billing systems write (DESIGN.md).

Strict on purpose: unknown fields are rejected, money is a decimal string, every
address is checked. A job that passes here can be decided, rendered and sent
without a later surprise; one that fails gets every error at once, each naming
its field, the value (masked if personal) and what was expected.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib.resources import files
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import available_timezones

import email_validator
import holidays
import phonenumbers
from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_precision, list_currencies
from holidays.registry import EntityLoader
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from worker.masking import mask

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DECIMAL = re.compile(r"^\d{1,15}(\.\d{1,6})?$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def _invalid(kind: str, message: str, field: str | None = None) -> PydanticCustomError:
    """An error whose message a person can act on; `field` names the sub-field a
    cross-field check is about, so the error's path points at it."""
    return PydanticCustomError(kind, message, {"field": field} if field else None)


def _quoted(field: str, value: str) -> str:
    shown = mask(field, value)
    return "'" + (shown if len(shown) <= 60 else shown[:57] + "...") + "'"


def _iso_date(value: object) -> object:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _invalid("date", f"{_shown(value)} is not a date (YYYY-MM-DD expected, e.g. 2026-12-01)")


def _money(value: object) -> object:
    if isinstance(value, Decimal) and value.is_finite() and value >= 0:
        return value
    if isinstance(value, str) and _DECIMAL.match(value):
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise _invalid("money", f"{value!r} is a JSON number; a decimal string is expected, "
                                f"e.g. \"{value}\" (floats lose cents)")
    raise _invalid("money", f"{_shown(value)} is not an amount (a decimal string ≥ 0 expected, e.g. \"12800.00\")")


def _currency(value: object) -> object:
    if isinstance(value, str) and value in _currencies():
        return value
    raise _invalid("currency", f"{_shown(value)} is not an ISO 4217 currency code (e.g. CNY, USD, EUR)")


def _phone(value: object, info: ValidationInfo) -> object:
    if not isinstance(value, str) or _trusted(info):
        return value
    problem = _phone_problem(value)
    if problem is not None:
        raise _invalid("phone", problem)
    return value


@lru_cache(maxsize=4096)
def _phone_problem(value: str) -> str | None:
    """What is wrong with a phone number, or None. The answer for a string never changes,
    and one debtor's number comes in every step of their cadence: parsed once (~50 µs)."""
    shown = _quoted("phone", value)
    hint = ""
    try:
        number = phonenumbers.parse(value, None)
        valid = phonenumbers.is_valid_number(number)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        valid, e164 = False, ""
    if valid and value == e164:
        return None
    if valid:
        hint = "; write it without spaces or punctuation"
    return f"{shown} is not a valid phone number (E.164 expected, e.g. +8613800138000){hint}"


def _email(value: object, info: ValidationInfo) -> object:
    if not isinstance(value, str) or _trusted(info):
        return value
    normalized, problem = _email_checked(value)
    if problem is not None:
        raise _invalid("email", problem)
    return normalized


@lru_cache(maxsize=4096)
def _email_checked(value: str) -> tuple[str, str | None]:
    """(normalised address, None) or (value, what is wrong): once per address (~40 µs)."""
    try:
        return email_validator.validate_email(value, check_deliverability=False).normalized, None
    except email_validator.EmailNotValidError as error:
        return value, f"{_quoted('email', value)} is not a valid email address ({error})"


def _trusted(info: ValidationInfo) -> bool:
    """A job this service wrote itself after validating it (the queue's and the agenda's
    copies, read by the worker and the forecast): its addresses are already normalised and
    valid, and checking them again costs more than the rest of the job (~55 µs an
    address). Never for what comes in."""
    return bool(isinstance(info.context, dict) and info.context.get("trusted"))


def _timezone(value: object) -> object:
    if isinstance(value, str) and value in _timezones():
        return value
    raise _invalid("timezone", f"{_shown(value)} is not an IANA time zone (e.g. Asia/Shanghai, America/New_York)")


def _locale(value: object) -> object:
    if isinstance(value, str) and _known_locale(value):
        return value
    raise _invalid("locale", f"{_shown(value)} is not a known locale (e.g. zh-CN, en-US)")


@lru_cache(maxsize=1024)
def _known_locale(value: str) -> bool:
    """Babel scans its data directory on each parse; the answer for a name never changes."""
    try:
        Locale.parse(value, sep="-" if "-" in value else "_")
        return True
    except (UnknownLocaleError, ValueError, TypeError):
        return False


def _country(value: object) -> object:
    if isinstance(value, str) and value in _countries():
        return value
    raise _invalid("country", f"{_shown(value)} is not an ISO 3166 alpha-2 country code (e.g. CN, US, DE)")


def _url(value: object) -> object:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in ("https", "http") and parts.netloc:
            return value
    raise _invalid("url", f"{_shown(value)} is not an http(s) URL (e.g. https://pay.example.com/i/INV-1)")


def _shown(value: object) -> str:
    if isinstance(value, str):
        return _quoted("", value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    """ISO 3166 alpha-2 codes, from the tz database's own copy of the standard."""
    text = files("tzdata").joinpath("zoneinfo", "iso3166.tab").read_text(encoding="utf-8")
    return frozenset(line[:2] for line in text.splitlines() if line and not line.startswith("#"))


Text = Annotated[str, Field(min_length=1, max_length=200)]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Money = Annotated[Decimal, BeforeValidator(_money)]
Channel = Literal["email", "sms", "voice"]


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: object) -> object:
        """Every text must be one the contact log can store as it came: a NUL or an unpaired
        surrogate (valid in JSON's \\u escapes, not in text) would fail the database's insert."""
        if isinstance(value, str):
            found = _UNSTORABLE.search(value)
            if found:
                what = "a NUL character" if found.group() == "\x00" else "an unpaired surrogate"
                raise _invalid("text", f"contains {what} (\\u{ord(found.group()):04x}) at position "
                                       f"{found.start() + 1}; text without it is expected")
        return value


class Consent(_Part):
    """Recorded consent per channel. Absent means email yes, SMS and calls no (TCPA)."""

    email: bool = True
    sms: bool = False
    voice: bool = False


class Invoice(_Part):
    id: Text
    number: Text
    amount_due: Money
    currency: Annotated[str, BeforeValidator(_currency)]
    due_date: IsoDate
    issued_date: IsoDate | None = None
    payment_url: Annotated[str, Field(max_length=2000), BeforeValidator(_url)] | None = None

    @model_validator(mode="after")
    def _minor_digits(self) -> Invoice:
        digits = _precision(self.currency)
        exponent = self.amount_due.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > digits:
            raise _invalid("money", f"'{self.amount_due}' has more decimals than {self.currency} "
                                    f"allows (at most {digits})", "amount_due")
        if self.issued_date and self.issued_date > self.due_date:
            raise _invalid("dates", f"{self.issued_date} is after due_date {self.due_date}", "issued_date")
        return self


@lru_cache(maxsize=256)
def _precision(currency: str) -> int:
    """Babel reads its data on each call; a currency's minor digits never change."""
    return int(get_currency_precision(currency))


class Debtor(_Part):
    account_id: Text
    name: Text
    company: Text | None = None
    email: Annotated[str, Field(max_length=254), AfterValidator(_email)] | None = None
    phone: Annotated[str, Field(max_length=32), AfterValidator(_phone)] | None = None
    locale: Annotated[str, BeforeValidator(_locale)]
    timezone: Annotated[str, BeforeValidator(_timezone)] | None = None
    country: Annotated[str, BeforeValidator(_country)]
    subdivision: Annotated[str, Field(max_length=10)] | None = None
    preferred_channel: Channel | None = None
    consent: Consent = Consent()
    kind: Literal["business", "person"] = "business"

    @model_validator(mode="after")
    def _subdivision(self) -> Debtor:
        if self.subdivision is not None:
            known = _subdivisions_of(self.country)
            if self.subdivision not in known:
                listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "") if known else "none"
                raise _invalid("subdivision", f"{self.subdivision!r} is not a subdivision of "
                                              f"{self.country} (known: {listed})", "subdivision")
        return self


@lru_cache(maxsize=64)
def _subdivisions_of(country: str) -> list[str]:
    """The subdivisions `holidays` knows for a country, loading that country's calendar
    only (`list_supported_countries` loads all 200 of them: a tenth of a second)."""
    if country not in set(EntityLoader.get_country_codes(include_aliases=True)):
        return []
    return list(getattr(holidays, country).subdivisions)


class Job(_Part):
    """One reminder. `job_id` is the billing system's idempotency key."""

    job_id: Annotated[str, Field(min_length=1, max_length=200)]
    invoice: Invoice
    debtor: Debtor
    stage: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    profile: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    # Register the invoice: the worker plans every step of this profile's ladder itself.
    cadence: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    # A staged step may go out from this day on (the cadence moves pre-due steps earlier).
    not_before: IsoDate | None = None

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, name: str, info: ValidationInfo) -> str:
        """Checked against the profiles given as validation context, when given."""
        profiles = (info.context or {}).get("profiles")
        if profiles is not None and name not in profiles:
            raise _invalid("profile", f"{name!r} is not a profile (known: {', '.join(profiles)})")
        return name

    @model_validator(mode="after")
    def _cadence(self, info: ValidationInfo) -> Job:
        if self.cadence is None:
            if self.not_before is not None and self.stage is None:
                raise _invalid("not_before", "not_before applies to a staged reminder: give stage too", "not_before")
            return self
        if self.stage is not None:
            raise _invalid("stage", "a registered cadence plans every stage itself: leave stage out", "stage")
        profiles = (info.context or {}).get("profiles")
        if profiles is None:
            return self
        if self.cadence not in profiles:
            raise _invalid("cadence", f"{self.cadence!r} is not a profile (known: {', '.join(profiles)})", "cadence")
        if profiles[self.cadence].ladder != profiles[self.profile].ladder:
            raise _invalid("cadence", f"the ladder of {self.cadence!r} is not the one of the job's profile "
                           f"{self.profile!r}: name that profile", "cadence")
        return self

    @model_validator(mode="after")
    def _known_stage(self, info: ValidationInfo) -> Job:
        profiles = (info.context or {}).get("profiles")
        if profiles is None or self.stage is None or profiles[self.profile].ladder.stage(self.stage):
            return self
        names = ", ".join(s.name for s in profiles[self.profile].ladder.stages)
        raise _invalid("stage", f"{self.stage!r} is not a stage of profile {self.profile!r} (known: {names})",
                       "stage")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
