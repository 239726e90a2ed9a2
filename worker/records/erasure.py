"""Legal holds, erasure requests and the purge of what has been kept long enough — the
same rules whichever door asks (CLI, console), each step recorded in the chain.

Erasing an account: refused while any hold is on it or its invoices, or while any of
its debts is within retention — the refusal says until when and by which rule, is
recorded, and ceases contact (a request to erase is a request to stop). Otherwise the
log destroys its keys and traces (`RecordBook.erase`), and the agenda and dramatiq's
dead letters in Redis lose every copy of its jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dramatiq.brokers.redis import RedisBroker

from schedules.profile import Profile
from worker.contact_log import ContactLog
from worker.jobs.book import JobBook
from worker.queue.agenda import Agenda
from worker.queue.broker import forget_dead_messages
from worker.records.book import Debt, Hold, RecordBook
from worker.records.retention import Kept, kept_until


class RecordsError(ValueError):
    """A request that names nothing the log holds, or is malformed: the caller's mistake."""


@dataclass(frozen=True)
class Standing:
    """Where an account's records stand: erased or not, held or not, kept until when."""

    account_id: str
    erased_at: datetime | None
    holds: list[Hold]
    kept: Kept
    debts: list[Debt]

    def erasable(self, now: datetime) -> bool:
        return not self.holds and (self.kept.until is None or self.kept.until <= now)

    def why_kept(self, now: datetime) -> str:
        if self.holds:
            return "; ".join(f"on legal hold ({h.target} {h.id}, since {h.at.date().isoformat()}, by {h.by}: "
                             f"{h.reason})" for h in self.holds)
        if self.kept.until is not None and self.kept.until > now:
            return self.kept.says()
        return "retention has run out and nothing holds it"


@dataclass(frozen=True)
class Answer:
    """What a records request did, in words, and whether it was done (exit 0) or refused (1)."""

    done: bool
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


class Records:
    """Records requests on one log and agenda; the rows are the records' book's."""

    def __init__(self, log: ContactLog, book: RecordBook, jobs: JobBook, agenda: Agenda | None,
                 broker: RedisBroker | None, profiles: Mapping[str, Profile], house_years: int) -> None:
        self.log, self.book, self.jobs, self.agenda, self.broker = log, book, jobs, agenda, broker
        self.profiles, self.house_years = profiles, house_years

    def target(self, identifier: str) -> tuple[str, str]:
        """("account" | "invoice", id) for an id the log knows; RecordsError otherwise."""
        identifier = identifier.strip()
        if not identifier:
            raise RecordsError("an account id or an invoice id is needed")
        if self.book.has_account(identifier):
            return "account", identifier
        if self.log.account_of(identifier) is not None or self.jobs.invoice_jobs(identifier):
            return "invoice", identifier
        raise RecordsError(f"{identifier}: no account or invoice with this id in the contact log")

    def standing(self, account_id: str, now: datetime, debts: list[Debt] | None = None) -> Standing:
        debts = self.book.debts(account_id) if debts is None else debts
        return Standing(account_id, self.book.erased_at(account_id), self.book.holds(account_id),
                        kept_until(debts, self.profiles, self.house_years), debts)

    def hold(self, identifier: str, reason: str, now: datetime, *, by: str) -> Answer:
        target, target_id = self.target(identifier)
        _required_reason(reason)
        if not self.book.place_hold(target, target_id, reason, now, by=by):
            return Answer(True, f"{target} {target_id} is already on legal hold")
        return Answer(True, f"{target} {target_id} is on legal hold: nothing of it is erased or purged until released")

    def release(self, identifier: str, reason: str, now: datetime, *, by: str) -> Answer:
        target, target_id = self.target(identifier)
        if not self.book.release_hold(target, target_id, reason or "released", now, by=by):
            return Answer(False, f"{target} {target_id} is not on legal hold")
        return Answer(True, f"{target} {target_id}: legal hold released")

    def erase(self, account_id: str, reason: str, now: datetime, *, by: str) -> Answer:
        """An erasure request (GDPR Art. 17): done, or refused with when and why."""
        _required_reason(reason)
        if not self.book.has_account(account_id):
            raise RecordsError(f"{account_id}: no account with this id in the contact log")
        standing = self.standing(account_id, now)
        if not standing.erasable(now):
            why = standing.why_kept(now)
            until = standing.kept.until.date().isoformat() if standing.kept.until and not standing.holds else None
            self.book.refuse_erasure(account_id, reason, why, until, standing.kept.rule, now, by=by)
            return Answer(False, f"{account_id}: not erased — {why}. The request is recorded, and contact with "
                                 "this person has ceased.", {"until": until, "rule": standing.kept.rule,
                                                             "held": bool(standing.holds)})
        return self._erase(account_id, reason, now, by, standing)

    def _erase(self, account_id: str, reason: str, now: datetime, by: str, standing: Standing) -> Answer:
        invoices = {debt.invoice_id for debt in standing.debts if debt.invoice_id}
        removed = self.book.erase(account_id, reason, now, by=by, rule=standing.kept.rule)
        if self.agenda is not None:
            removed["agenda"] = self.agenda.erase_account(account_id, sorted(invoices))
        if self.broker is not None:
            removed["dead_messages"] = forget_dead_messages(self.broker, account_id)
        again = f" (erased before, on {standing.erased_at.date().isoformat()})" if standing.erased_at else ""
        return Answer(True, f"{account_id}: erased{again} — {removed['keys']} key(s) destroyed, "
                            f"{removed['addresses']} address(es) unindexed, {removed.get('agenda', 0)} scheduled "
                            f"job(s) and {removed['dead_letters']} dead letter(s) removed; the chain still verifies",
                      removed)

    def purge(self, as_of: datetime, now: datetime, *, dry_run: bool, by: str) -> list[tuple[Standing, Answer | None]]:
        """Erase every account whose retention ran out by `as_of` and that nothing holds,
        not erased already since its last activity; with `dry_run`, only list them."""
        due: list[tuple[Standing, Answer | None]] = []
        for account_id in self.book.accounts():
            standing = self.standing(account_id, as_of)
            last = max((debt.last_activity for debt in standing.debts), default=None)
            if standing.erased_at is not None and (last is None or last <= standing.erased_at):
                continue
            if standing.kept.until is None or not standing.erasable(as_of):
                continue
            answer = None if dry_run else self._erase(
                account_id, f"retention ran out on {standing.kept.until.date().isoformat()} "
                            f"(rule {standing.kept.rule})", now, by, standing)
            due.append((standing, answer))
        return due


def _required_reason(reason: str) -> None:
    if not reason.strip():
        raise RecordsError("--reason: say why (a ticket, the request's reference): it is kept in the record")
