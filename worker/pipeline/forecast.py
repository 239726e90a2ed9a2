"""What the worker will do in the next days, from the agenda: each pending step decided
as the worker would decide it when it comes due — with what the log knows now — so an
operator sees tomorrow's sends by channel and profile before they happen (the console's
Schedule page, `dunning forewarn`).

It is a forecast: news before the step comes due (a payment, a reply) changes it, and
a deferred step is followed only within the horizon. The queue and the agenda carry
jobs, never decisions: nothing here is written anywhere.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo

from channels.base import Channel, ChannelError, Message
from schedules import Profiles
from schedules.zones import candidate_zones
from worker.contact_log import ContactLog, Known
from worker.contact_log.facts import FACTS_LOOKBACK, Ask
from worker.jobs.contract import Job
from worker.jobs.parse import parse_job
from worker.pipeline.standing import as_decided, dropped, owed
from worker.policy import decide
from worker.queue.agenda import Agenda

HORIZON_DAYS = 14
LIMIT = 20_000  # steps read per forecast (10,000 take ~0.8 s once parsed: bench/schedule.py); said when reached


@dataclass(frozen=True)
class Step:
    """One pending step: when it comes due (UTC), and what the worker would then do."""

    entry_id: str
    job_id: str
    invoice_id: str
    account_id: str
    profile: str
    zone: str  # the debtor's (first candidate) time zone
    due: datetime | None  # in the agenda (UTC); None: paused (a dispute or an operator's pause)
    action: str  # send, escalate, defer (beyond the horizon), skip, paused
    channel: str | None = None
    stage: str | None = None
    at: datetime | None = None  # when it would go (UTC)
    reasons: tuple[str, ...] = ()

    @property
    def local(self) -> datetime | None:
        moment = self.at or self.due
        return moment.astimezone(ZoneInfo(self.zone)) if moment else None


@dataclass(frozen=True)
class Plan:
    start: date  # the first day (UTC)
    days: int
    steps: list[Step]
    complete: bool  # False: more steps than LIMIT were pending; the first LIMIT are counted
    counts: Counter[tuple[date, str, str]] = field(default_factory=Counter)  # (day, channel, profile) → sends

    def day_list(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def by_day_and_channel(self) -> dict[date, Counter[str]]:
        found: dict[date, Counter[str]] = {day: Counter() for day in self.day_list()}
        for (day, channel, _), count in self.counts.items():
            if day in found:
                found[day][channel] += count
        return found


def _zone(job: Job) -> str:
    debtor = job.debtor
    found = candidate_zones(debtor.timezone, debtor.phone, debtor.country, phone_always=False)
    return found[0].key if found else "UTC"


def _predicted(log: ContactLog, known: Profiles, pending: Sequence[tuple[str, datetime | None, Job]], now: datetime,
               horizon: datetime) -> list[Step]:
    """Each step decided as the worker would decide it when it comes due, with what the log
    knows now — read for all of them at once (`known_many`): facts change only by events,
    and there are none after now; only the caps' look-back moves with the moment."""
    asks = [Ask(job.debtor.account_id, job.invoice.id, job.job_id,
                tuple(a for a in (job.debtor.email, job.debtor.phone) if a)) for _, _, job in pending]
    return [_step(log, known, job, entry_id, due, facts, now, horizon)
            for (entry_id, due, job), facts in zip(pending, log.known_many(asks, now), strict=True)]


def _step(log: ContactLog, profiles: Profiles, job: Job, entry_id: str, due: datetime | None, known: Known,
          now: datetime, horizon: datetime) -> Step:
    base = Step(entry_id, job.job_id, job.invoice.id, job.debtor.account_id, job.profile, _zone(job), due,
                action="paused", reasons=())
    facts = known.facts
    if due is None:  # parked: say by what
        why = [said for held, said in ((facts.paused, "paused by an operator until resumed"),
                                       (facts.disputed, "paused until the dispute is resolved")) if held]
        return replace(base, reasons=tuple(why) or ("paused",))
    gone = dropped(known)
    if gone:
        return replace(base, action="skip", reasons=(gone,))
    facts = as_decided(facts, owed(job.invoice.amount_due, facts,
                                   log.accepted_at(job.job_id) if facts.payments else None))
    moment = max(due, now)
    for _ in range(6):
        cutoff = moment - FACTS_LOOKBACK  # as the worker will read them then
        seen = facts if all(a.at >= cutoff for a in facts.attempts) else facts.model_copy(
            update={"attempts": tuple(a for a in facts.attempts if a.at >= cutoff)})
        decision = decide(job, moment, profiles, seen)
        if decision.action == "defer" and decision.until is not None and decision.until <= horizon:
            moment = decision.until
            continue
        at = decision.at or (decision.until if decision.action == "defer" else moment)
        return replace(base, action=decision.action, channel=decision.channel, stage=decision.stage,
                       zone=decision.zones[0] if decision.zones else base.zone,
                       at=at.astimezone(UTC) if at else None, reasons=decision.reasons)
    return replace(base, action="defer", at=moment.astimezone(UTC), reasons=("deferred again and again",))


def _horizon(now: datetime, days: int) -> datetime:
    """The end of the forecast: midnight UTC, `days` days after today's (UTC)."""
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=days), datetime.min.time(), UTC)


def plan(agenda: Agenda, log: ContactLog, known: Profiles, now: datetime, days: int = HORIZON_DAYS,
         limit: int = LIMIT) -> Plan:
    """The next `days` days (UTC), from today: every step in the agenda due by then."""
    start, horizon = now.astimezone(UTC).date(), _horizon(now, days)
    entries = agenda.upcoming(horizon, limit + 1)
    pending = [(entry_id, due, job) for entry_id, due, payload in entries[:limit]
               if (job := _job_of(log, known, payload)) is not None]
    steps = _predicted(log, known, pending, now, horizon)
    counts: Counter[tuple[date, str, str]] = Counter(
        (step.at.date(), step.channel, step.profile) for step in steps
        if step.action == "send" and step.channel and step.at and step.at < horizon)
    return Plan(start, days, steps, len(entries) <= limit, counts)


def _job_of(log: ContactLog, known: Profiles, payload: Mapping[str, object] | None) -> Job | None:
    """The reminder an agenda entry carries (None: a supervisor's notice, or unreadable).
    Jobs are parsed once per log and process (`_PARSED`, by job id: a job id is one
    reminder, its JSON never changes once queued): the page reads the same entries again."""
    job_json = (payload or {}).get("job")
    if not isinstance(job_json, dict) or "notify" in (payload or {}):
        return None
    parsed = _PARSED.setdefault(log, {})
    key = str(job_json.get("job_id"))
    if key not in parsed:
        if len(parsed) >= _PARSED_MAX:
            parsed.pop(next(iter(parsed)), None)  # `warm` may be filling it too
        parsed[key] = parse_job(job_json, known, "agenda", trusted=True).job  # intake's own, validated copy
    return parsed[key]


# A log → its jobs by id, parsed (validation costs ~85 µs a job; a look-up ~1 µs).
_PARSED: WeakKeyDictionary[ContactLog, dict[str, Job | None]] = WeakKeyDictionary()
_PARSED_MAX = 4 * LIMIT


def warm(agenda: Agenda, log: ContactLog, known: Profiles, now: datetime, days: int = HORIZON_DAYS,
         limit: int = LIMIT) -> int:
    """Parse the jobs of the steps `plan` would read, and keep them: `serve` does this once
    as it starts, in the background, so the first Schedule page an operator opens is as
    fast as the next (10,000 steps: ~2 s cold, under 1 s warm; bench/schedule.py).
    Returns how many jobs are kept."""
    horizon = _horizon(now, days)
    return sum(_job_of(log, known, payload) is not None for _, _, payload in agenda.upcoming(horizon, limit))


def pending_of(agenda: Agenda, log: ContactLog, known: Profiles, invoices: Iterable[str], now: datetime,
               days: int = HORIZON_DAYS) -> list[Step]:
    """An invoice's (or an account's invoices') pending steps, paused ones included."""
    horizon = _horizon(now, days)
    pending = []
    for invoice in dict.fromkeys(invoices):
        for entry_id, due in agenda.of_invoice(invoice):
            job = _job_of(log, known, agenda.payload_of(entry_id) if due is not None
                          else agenda.parked_payload(invoice, entry_id))
            if job is not None:
                pending.append((entry_id, due, job))
    return _predicted(log, known, pending, now, horizon)


def forewarning(found: Plan, day: date) -> tuple[str, str]:
    """The operator's morning email (`dunning forewarn`): a day's planned sends by channel
    and profile, and what waits for a person. Subject and text; no debtor's address."""
    sends = {(channel, profile): count for (when, channel, profile), count in found.counts.items() if when == day}
    total = sum(sends.values())
    lines = [f"Planned for {day.isoformat()} (UTC): {total} reminder(s).", ""]
    if sends:
        lines.append(f"{'Channel':<10}{'Profile':<24}{'Sends':>6}")
        for (channel, profile), count in sorted(sends.items()):
            lines.append(f"{channel:<10}{profile:<24}{count:>6}")
    escalating = [s for s in found.steps if s.action == "escalate" and s.at and s.at.date() == day]
    if escalating:
        lines += ["", f"To be handed to a person: {len(escalating)} invoice(s): "
                  + ", ".join(sorted(s.invoice_id for s in escalating)[:20])]
    paused = sum(1 for s in found.steps if s.action == "paused")
    if paused:
        lines += ["", f"Paused (dispute or an operator's pause): {paused} step(s)."]
    if not found.complete:
        lines += ["", f"More than {LIMIT} steps are pending: the first {LIMIT} are counted."]
    lines += ["", "A forecast from the agenda and what the contact log knows now: a payment or a reply before "
              "a step comes due changes it. The console's Schedule page shows the next 14 days."]
    return f"dunning: {total} reminder(s) planned for {day.isoformat()}", "\n".join(lines) + "\n"


class ForewarnError(Exception):
    """The forewarning could not be sent: no SMTP relay configured, or it refused."""


def send_forewarning(channels: Mapping[str, Channel], log: ContactLog, known: Profiles, agenda: Agenda, to: str,
                     now: datetime) -> date:
    """E-mail tomorrow's plan (the UTC day after `now`) to an operator through the
    configured relay (`channels`: `wiring.channels`, closed here); the day it covers."""
    channel = channels.get("email")
    if channel is None:
        raise ForewarnError("No SMTP relay is configured (DUNNING_SMTP_URL): the forewarning cannot be sent.")
    day = (now + timedelta(days=1)).astimezone(UTC).date()
    subject, text = forewarning(plan(agenda, log, known, now), day)

    async def send() -> None:
        try:
            await channel.send(Message(key=f"forewarn/{day.isoformat()}/{to}/{now.timestamp():.0f}",
                                       channel="email", to=to, text=text, locale="en-US", subject=subject,
                                       created_at=now))
        finally:
            for opened in channels.values():
                await opened.close()
    try:
        asyncio.run(send())
    except ChannelError as error:
        raise ForewarnError(f"The relay did not take the forewarning: {error}") from None
    return day
