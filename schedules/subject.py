"""What the policy needs to know of a reminder job, declared here so `schedules/`
does not depend on the application's job model (which satisfies it structurally)."""

from __future__ import annotations

from datetime import date
from typing import Protocol


class Consent(Protocol):
    @property
    def email(self) -> bool: ...
    @property
    def sms(self) -> bool: ...
    @property
    def voice(self) -> bool: ...


class Invoice(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def due_date(self) -> date: ...


class Debtor(Protocol):
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def country(self) -> str: ...
    @property
    def subdivision(self) -> str | None: ...
    @property
    def preferred_channel(self) -> str | None: ...
    @property
    def consent(self) -> Consent: ...


class Reminder(Protocol):
    """A reminder job as the policy sees it."""

    @property
    def invoice(self) -> Invoice: ...
    @property
    def debtor(self) -> Debtor: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def not_before(self) -> date | None:
        """A staged reminder may go out from this local day on, even before its stage
        starts (a pre-due step moved earlier off a closed day)."""
        ...
