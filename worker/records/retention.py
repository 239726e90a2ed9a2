"""How long a debt's records must be kept: the profiles' retention rules, and the house
default for debts no rule about persons covers — the longest wins (COMPLIANCE.md). The
clock of each debt runs from its last collection activity; an account is kept as long
as its longest-kept debt. Pure: rows in, dates out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from schedules.profile import Profile
from schedules.spec import Retention
from worker.records.book import Debt

HOUSE_RULE = "R-HOUSE"


@dataclass(frozen=True)
class Kept:
    """Until when an account's records must be kept, and what says so (None: no rule)."""

    until: datetime | None
    rule: str | None = None
    years: int | None = None
    invoice_id: str | None = None
    profile: str | None = None
    last_activity: datetime | None = None

    def says(self) -> str:
        """In words, for a refusal or a purge preview."""
        if self.until is None:
            return "no retention rule applies"
        debt = f"invoice {self.invoice_id}" if self.invoice_id else "the account's own records"
        return (f"kept until {self.until.date().isoformat()} by rule {self.rule} ({self.years} years after the last "
                f"collection activity on {debt}, {self.last_activity.date().isoformat() if self.last_activity else '?'}"
                f"; profile {self.profile})")


def rules_for(profile: Profile | None, house_years: int) -> list[Retention]:
    """The rules that apply to a debt under `profile`: its own, and the house default
    unless the profile is about persons (whose rules the profiles state)."""
    rules = list(profile.retention) if profile is not None else []
    if profile is None or profile.debtor_kind != "person":
        rules.append(Retention(id=HOUSE_RULE, years_after_last_activity=house_years,
                               note="the house default for business debts (DUNNING_RETENTION_YEARS)"))
    return rules


def kept_until(debts: Iterable[Debt], profiles: Mapping[str, Profile], house_years: int) -> Kept:
    """The latest date any debt of the account must be kept until, by its longest rule."""
    kept = Kept(None)
    for debt in debts:
        for name in sorted(debt.profiles or {"default"}):
            rules = rules_for(profiles.get(name), house_years)
            if not rules:
                continue
            rule = max(rules, key=lambda r: r.years_after_last_activity)
            until = add_years(debt.last_activity, rule.years_after_last_activity)
            if kept.until is None or until > kept.until:
                kept = Kept(until, rule.id, rule.years_after_last_activity, debt.invoice_id, name, debt.last_activity)
    return kept


def add_years(moment: datetime, years: int) -> datetime:
    """The same day `years` later (29 February → 28 February in a common year)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)
