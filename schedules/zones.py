"""Which time zones a debtor may be in (W-TZ), when nobody can be sure.

Candidates come from the stated zone, the phone number's region, and the country.
A number that is not tied to a place (a non-geographic or personal number) says
nothing about where its owner is, so it adds no candidates rather than the whole
numbering plan. The stated zone, when there is one, comes first: it is the zone
in which "today" and reasons are told.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib.resources import files
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers.timezone import time_zones_for_geographical_number

from schedules.subject import Debtor

_GEOGRAPHIC = {PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
_UNKNOWN = "Etc/Unknown"


@lru_cache(maxsize=1)
def _zones_by_country() -> dict[str, tuple[str, ...]]:
    """ISO country → its canonical zones, from the tz database's own zone.tab."""
    table: defaultdict[str, list[str]] = defaultdict(list)
    text = files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            country, _coordinates, zone = line.split("\t")[:3]
            table[country].append(zone)
    return {country: tuple(sorted(zones)) for country, zones in table.items()}


def country_zones(country: str) -> tuple[str, ...]:
    return _zones_by_country().get(country.upper(), ())


@lru_cache(maxsize=65536)
def phone_zones(phone: str) -> tuple[str, ...]:
    """Zones the number's area points to; () when the number does not tell."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    if phonenumbers.number_type(number) not in _GEOGRAPHIC:
        return ()
    return tuple(sorted(z for z in time_zones_for_geographical_number(number) if z != _UNKNOWN))


@lru_cache(maxsize=65536)
def candidate_zones(timezone: str | None, phone: str | None, country: str | None,
                    phone_always: bool) -> tuple[ZoneInfo, ...]:
    """The zones every contact must be permitted in, the most telling one first.

    With a stated zone, the phone's zones join it only when `phone_always` (consumer
    profiles, following the Reg F commentary); without one, the phone's zones, else
    the country's. Empty means unknown: the caller must not guess.
    """
    from_phone = phone_zones(phone) if phone and (phone_always or not timezone) else ()
    if timezone:
        names = [timezone, *from_phone]
    elif from_phone:
        names = list(from_phone)
    else:
        names = list(country_zones(country)) if country else []
    return tuple(ZoneInfo(name) for name in dict.fromkeys(names))


def local_day(debtor: Debtor, moment: datetime) -> date:
    """The debtor's calendar day at `moment`: the one "today" for deciding, planning,
    the message's days overdue and the supervisor's notice. Told in the first candidate
    zone (the phone's extra zones never change which comes first), UTC if none is known."""
    zones = candidate_zones(debtor.timezone, debtor.phone, debtor.country, False)
    return moment.astimezone(zones[0] if zones else UTC).date()
