"""`dunning simulate`: what a portfolio's cadences would do over the coming days.

The real code runs — intake and cadence planning, the agenda (a private
redis-server), `decide` with caps counted from a contact log, rendering, the channel
adapters — against a simulated clock, the local SMTP sink and the Twilio sandbox.
It never reads the provider settings from the environment, so it cannot reach a real
provider. Jobs without a stage are registered as cadences (as `dunning register`
does); staged ones are single reminders. With `pay_rate`, each open invoice is paid
on a given day with that probability (seeded), which shows its cadence stopping.

Provider rate limits are not simulated: they move a send by seconds, not days.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from channels.base import Rate
from worker import wiring
from worker.clock import FixedClock
from worker.contact_log.kinds import DeliveryStatus, InvoiceStatus, Kind
from worker.events import Events
from worker.jobs.contract import Job
from worker.jobs.intake import as_registration, register
from worker.jobs.parse import Parsed
from worker.local.stack import Stack
from worker.masking import mask
from worker.pipeline import Pipeline
from worker.policy import profiles
from worker.queue.agenda import Agenda
from worker.queue.envelope import envelope_for
from worker.queue.throttle import Throttle
from worker.settings import Settings

FIELDS = ("day", "local_time", "utc", "invoice", "account", "debtor", "profile", "action", "channel", "stage",
          "detail")


@dataclass(frozen=True)
class Row:
    """One line of the simulation's report: something sent, deferred, skipped, escalated, paid."""

    utc: datetime
    local: datetime
    invoice: str
    account: str
    debtor: str
    profile: str
    action: str
    channel: str = ""
    stage: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"day": self.local.date().isoformat(), "local_time": self.local.strftime("%Y-%m-%d %H:%M %Z"),
                "utc": self.utc.isoformat(), "invoice": self.invoice, "account": self.account,
                "debtor": self.debtor, "profile": self.profile, "action": self.action, "channel": self.channel,
                "stage": self.stage, "detail": self.detail}


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    rejected: list[Parsed] = field(default_factory=list)


class _NoThrottle(Throttle):
    """Rate limits move a send by seconds; a preview of days leaves them out."""

    def __init__(self) -> None:
        pass

    def reserve(self, rate: Rate, cost: int) -> float:
        return 0.0


def simulate(parsed: Iterable[Parsed], start: datetime, days: int, settings: Settings, pay_rate: float = 0.0,
             seed: int = 0, unmasked: bool = False, progress: Callable[[int, int], None] | None = None) -> Report:
    """`progress(day, days)` is told each simulated day as the clock reaches it."""
    with tempfile.TemporaryDirectory(prefix="dunning-simulate-") as scratch:
        stack = Stack(Path(scratch)).start()
        try:
            return asyncio.run(_Run(stack, Path(scratch), start, days, settings, pay_rate, seed, unmasked, progress)
                               .run(parsed))
        finally:
            stack.stop()


class _Run:
    def __init__(self, stack: Stack, scratch: Path, start: datetime, days: int, settings: Settings,
                 pay_rate: float, seed: int, unmasked: bool, progress: Callable[[int, int], None] | None) -> None:
        # Only the template and profile choices come from the caller; every provider is the sandbox.
        sandboxed = Settings.from_env({**stack.env(), "DUNNING_DATABASE_URL": f"sqlite:///{scratch / 'log.db'}"})
        self.settings = Settings(**{**sandboxed.__dict__, "template_dir": settings.template_dir,
                                    "profile_dir": settings.profile_dir, "sender": settings.sender,
                                    "default_locale": settings.default_locale})
        self.stack, self.start, self.end = stack, start, start + timedelta(days=days)
        self.pay_rate, self.random, self.unmasked = pay_rate, random.Random(seed), unmasked
        self.clock = FixedClock(start)
        self.log = wiring.log(self.settings, migrate=True)  # a fresh database of its own
        self.book = wiring.books(self.log).jobs
        self.agenda = Agenda(stack.client)
        self.jobs: dict[str, Job] = {}
        self.days, self.progress, self.told = days, progress, 0

    async def run(self, parsed: Iterable[Parsed]) -> Report:
        report = Report()
        services = wiring.services(self.settings, self.log, client=self.stack.client, at=self.clock,
                                   throttle=_NoThrottle())
        pipeline = Pipeline(services)
        try:
            known = profiles(self.settings.profile_dir)
            for item in parsed:
                item = as_registration(item, known) if isinstance(item.data, dict) and "stage" not in item.data \
                    else item
                if item.job is None:
                    report.rejected.append(item)
                    continue
                self._accept(item.job)
            payments = self._payments()
            while True:
                due = [t for t in (self.agenda.next_due(), min(payments, default=None)) if t is not None]
                if not due or min(due) > self.end:
                    break
                self.clock.moment = max(min(due), self.clock.moment)
                self._tell()
                await self._step(pipeline, payments)
            self.told = self.days - 1
            self._tell(self.days)
            services.write.close()
            report.rows = self._rows()
        finally:
            for channel in services.channels.values():
                await channel.close()
            self.log.engine.dispose()
        return report

    def _tell(self, day: int | None = None) -> None:
        reached = day or min((self.clock.moment - self.start).days + 1, self.days)
        if self.progress is not None and reached > self.told:
            self.told = reached
            self.progress(reached, self.days)

    def _accept(self, job: Job) -> None:
        now = self.clock.now()
        self.jobs[job.invoice.id] = job
        if not self.book.accept_job(job.job_id, job.invoice.id, job.debtor.account_id, "{}", now):
            return
        if job.cadence is not None:
            register(job, self.book, profiles(self.settings.profile_dir), self.agenda, now)
        else:
            self.agenda.schedule(job.job_id, envelope_for(job), now)

    def _payments(self) -> dict[datetime, str]:
        """When each invoice is paid, if it is: a random working hour of a day it is due to pay."""
        paid: dict[datetime, str] = {}
        if self.pay_rate <= 0:
            return paid
        for invoice, job in sorted(self.jobs.items()):
            zone = ZoneInfo(job.debtor.timezone or "UTC")
            day = self.start.astimezone(zone).date()
            while datetime.combine(day, time(), zone) < self.end:
                if self.random.random() < self.pay_rate:
                    moment = datetime.combine(day, time(self.random.randint(8, 19), self.random.randint(0, 59)), zone)
                    if self.start <= moment <= self.end:
                        paid[moment] = invoice
                        break
                day += timedelta(days=1)
        return paid

    async def _step(self, pipeline: Pipeline, payments: dict[datetime, str]) -> None:
        now = self.clock.now()
        for moment in sorted(m for m in payments if m <= now):
            Events(self.log, self.agenda).paid(payments.pop(moment), moment, by="simulation")
        ready: list[dict[str, Any]] = []
        for entries in iter(lambda: self.agenda.claim(now, 1000), []):
            self.agenda.done(entries)
            ready.extend(entry.payload for entry in entries)
        for payload in ready:
            await pipeline.handle(payload)

    def _rows(self) -> list[Row]:
        rows: list[Row] = []
        for event in self.log.history():
            row = self._row(event)
            if row is not None:
                rows.append(row)
        return sorted(rows, key=lambda r: r.utc)

    def _row(self, event: dict[str, Any]) -> Row | None:
        kind, status, detail = event["kind"], event["status"], event["detail"] or {}
        job = self.jobs.get(event["invoice_id"] or "")
        if job is None:
            return None
        if kind == Kind.DELIVERY and status in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
            action, what = status, event["error_text"] or ""
        elif kind == Kind.DECISION and status in ("defer", "skip"):
            action = status
            what = (f"until {detail['until'][:16]}: " if status == "defer" else "") + "; ".join(detail["reasons"])
        elif kind == Kind.INVOICE and status in (InvoiceStatus.PAID, InvoiceStatus.ESCALATED):
            action, what = status, "; ".join(detail.get("reasons", []))
        else:
            return None
        zone = ZoneInfo(job.debtor.timezone or "UTC")
        name = job.debtor.name if self.unmasked else mask("name", job.debtor.name)
        return Row(event["occurred_at"], event["occurred_at"].astimezone(zone), job.invoice.id, job.debtor.account_id,
                   name, job.profile, action, event["channel"] or "", event["stage"] or detail.get("stage") or "",
                   what)
