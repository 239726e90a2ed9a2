"""`decide(job, now, facts, profile)`: whether, when and through which channel — and why.

Pure and deterministic: no I/O, no clock. The worker, the CLI and the simulator call
this same function, so "what would happen" and "what happened" cannot disagree.

The order is fixed and each step can end the decision: time zones (W-TZ) →
suppressions (S-*) → stage (the ladder) → escalation (F-LADDER) → channel plan
(consent, address, suppressions) → caps (F-*) → contact window (W-*).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schedules.caps import Block, blocked
from schedules.decision import Action, Decision
from schedules.facts import Facts
from schedules.profile import Profile
from schedules.spec import Stage
from schedules.subject import Debtor, Reminder
from schedules.zones import candidate_zones, local_day

_ADDRESS_NAMES = {"email": "email address", "sms": "phone number", "voice": "phone number"}


def decide(job: Reminder, now: datetime, facts: Facts, profile: Profile) -> Decision:
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (with a time zone)")
    debtor = job.debtor
    zones = candidate_zones(debtor.timezone, debtor.phone, debtor.country, profile.phone_zones_always)
    if not zones:
        return Decision("skip", ("time zone unknown: no timezone, no geographic phone number, "
                                 f"no zones known for country {debtor.country!r}",), ("TZ_UNKNOWN",))
    return _Deciding(job, now, facts, profile, zones).run()


def address_for(channel: str, debtor: Debtor) -> str | None:
    return debtor.email if channel == "email" else debtor.phone


def refusal(channel: str, debtor: Debtor, facts: Facts) -> tuple[str, str] | None:
    """Why `channel` cannot carry a message to this debtor at all — (rule, reason) — or
    None: consent, an address, the debtor's own stops, a proven failure."""
    address = address_for(channel, debtor)
    if not getattr(debtor.consent, channel):
        return "S-CONSENT", f"{channel}: no consent"
    if not address:
        return "NO-ADDRESS", f"{channel}: no {_ADDRESS_NAMES[channel]}"
    if channel in facts.suppressed_channels:
        return "S-MEDIUM", f"{channel}: debtor asked not to be contacted this way"
    if address.casefold() in facts.invalid_addresses:
        return "S-INVALID", f"{channel}: {_ADDRESS_NAMES[channel]} proven invalid"
    if address.casefold() in facts.suppressed_addresses:
        return "S-OPTOUT", f"{channel}: {_ADDRESS_NAMES[channel]} opted out"
    if channel in facts.failed_channels:
        return "FAILED", f"{channel}: failed for good for this reminder"
    return None


class _Deciding:
    """One decision's working state, so each step reads as a short method."""

    def __init__(self, job: Reminder, now: datetime, facts: Facts, profile: Profile,
                 zones: tuple[ZoneInfo, ...]) -> None:
        self.job, self.now, self.facts, self.profile, self.zones = job, now, facts, profile, zones
        self.zone = zones[0]
        self.today = local_day(job.debtor, now)
        self.zone_names = tuple(z.key for z in zones)
        self.tz_rules = ("W-TZ",) if len(zones) > 1 else ()

    def run(self) -> Decision:
        facts, invoice = self.facts, self.job.invoice
        if facts.paid:
            return self._end("skip", ["invoice paid"], ["S-PAID"])
        if facts.written_off:
            return self._end("skip", ["invoice written off"], ["S-WRITTEN-OFF"])
        if facts.disputed:
            return self._end("skip", ["invoice disputed"], ["S-DISPUTE"])
        if facts.paused:
            return self._end("skip", ["paused by an operator"], ["S-PAUSE"])
        if facts.escalated:
            return self._end("skip", ["invoice escalated to a person"], ["ESCALATED"])
        if facts.ceased and self.profile.honour_cease:
            return self._end("skip", ["debtor asked to cease communication"], ["S-CEASE"])
        if facts.promised_until is not None and facts.promised_until >= self.today:
            resume = self._day_start(facts.promised_until + timedelta(days=1))
            return self._defer(resume, [f"promised to pay by {facts.promised_until}"], ["S-PROMISE"])

        dpd = (self.today - invoice.due_date).days
        stage = self._stage(dpd)
        if isinstance(stage, Decision):
            return stage
        if stage.action == "escalate":
            return self._end("escalate", [f"{dpd} days past due: stage {stage.name} is for a person"],
                             ["LADDER"], stage)
        unanswered = sum(1 for a in facts.attempts
                         if a.channel == "voice" and a.stage == stage.name and a.outcome != "conversation"
                         and a.invoice_id in (None, invoice.id))
        if unanswered >= self.profile.ladder.escalate_after_unanswered_calls:
            return self._end("escalate", [f"{unanswered} unanswered calls in stage {stage.name}"],
                             ["F-LADDER"], stage)
        return self._channel(stage)

    def _stage(self, dpd: int) -> Stage | Decision:
        ladder, due = self.profile.ladder, self.job.invoice.due_date
        if self.job.stage is not None:
            stage = ladder.stage(self.job.stage)
            if stage is None:
                return self._end("skip", [f"stage {self.job.stage} is not in the ladder of profile "
                                          f"{self.profile.name}"], ["LADDER"])
            if stage.to_dpd is not None and dpd > stage.to_dpd:
                return self._end("skip", [f"stage {stage.name} ended on {due + timedelta(days=stage.to_dpd)} "
                                          f"({dpd} days past due)"], ["LADDER"], stage)
        else:
            stage = next((s for s in ladder.stages if s.covers(dpd)), None)
            if stage is None:
                stage = next((s for s in ladder.stages if s.from_dpd > dpd), None)
                if stage is None:
                    return self._end("skip", [f"ladder finished ({dpd} days past due)"], ["LADDER"])
        early = self.job.not_before if self.job.stage is not None else None
        if dpd < stage.from_dpd and (early is None or self.today < early):
            starts = early or due + timedelta(days=stage.from_dpd)
            return self._defer(self._day_start(starts), [f"stage {stage.name} starts on {starts}"],
                               ["LADDER"], stage)
        return stage

    def _channel(self, stage: Stage) -> Decision:
        debtor, facts = self.job.debtor, self.facts
        plan: list[str] = list(stage.channels)
        preferred = debtor.preferred_channel
        note = ""
        if preferred in plan and plan[0] != preferred:
            plan.remove(preferred)
            plan.insert(0, preferred)
            note = f" ({preferred} preferred)"
        reasons = [f"stage {stage.name}: {' then '.join(plan)}{note}"]
        rules: list[str] = []
        usable: list[tuple[str, str]] = []
        for channel in plan:
            refused = refusal(channel, debtor, facts)
            if refused is None:
                usable.append((channel, address_for(channel, debtor) or ""))
            else:
                rules.append(refused[0])
                reasons.append(refused[1])
        if not usable:
            return self._end("skip", reasons + ["no usable channel"], rules, stage)

        blocks: list[Block] = []
        for channel, address in usable:
            block = blocked(self.profile, channel, facts.attempts, self.job.invoice.id, address,
                            self.now, self.zone)
            if block is None:
                return self._send(stage, channel, reasons + [b.reason for b in blocks],
                                  rules + [b.rule for b in blocks])
            blocks.append(block)
        release = min(b.until for b in blocks)
        return self._defer(release, [b.reason for b in blocks] + reasons, [b.rule for b in blocks] + rules, stage)

    def _send(self, stage: Stage, channel: str, reasons: list[str], rules: list[str]) -> Decision:
        calendar = self.profile.calendar
        debtor = self.job.debtor
        interval = calendar.next_permitted(self.zones, self.now, debtor.country, debtor.subdivision)
        if interval is None or interval.start > self.now:
            closures = calendar.closures(self.zones, self.now, debtor.country, debtor.subdivision)
            return self._defer(self.now, [c.reason for c in closures] + reasons,
                               [c.rule for c in closures] + rules, stage)
        return Decision("send", tuple(reasons), _ids(rules, calendar.rule_ids, self.tz_rules), self.zone_names,
                        channel=channel, stage=stage.name, template=stage.name,
                        at=self.now.astimezone(self.zone), window_end=interval.end.astimezone(self.zone))

    def _defer(self, earliest: datetime, reasons: list[str], rules: list[str], stage: Stage | None = None) -> Decision:
        debtor = self.job.debtor
        calendar = self.profile.calendar
        interval = calendar.next_permitted(self.zones, max(earliest, self.now), debtor.country, debtor.subdivision)
        if interval is None:
            where = "every candidate zone" if len(self.zones) > 1 else self.zone.key
            return self._end("skip", reasons + [f"no permitted time in {where} within a year"],
                             rules + list(calendar.rule_ids) + list(self.tz_rules), stage)
        return Decision("defer", tuple(reasons), _ids(rules, self.tz_rules), self.zone_names,
                        stage=stage.name if stage else None, until=interval.start.astimezone(self.zone))

    def _end(self, action: Action, reasons: list[str], rules: list[str], stage: Stage | None = None) -> Decision:
        return Decision(action, tuple(reasons), _ids(rules), self.zone_names, stage=stage.name if stage else None)

    def _day_start(self, day: date) -> datetime:
        return datetime.combine(day, time(), self.zone)


def _ids(*groups: Iterable[str]) -> tuple[str, ...]:
    """Rule IDs in order of first mention, each once."""
    return tuple(dict.fromkeys(rule for group in groups for rule in group))
