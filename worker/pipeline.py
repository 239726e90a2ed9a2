"""One reminder's way through the worker: decide → render → claim → send → record.

Every message from the queue is decided afresh, with facts read from the contact log
at that moment: a reminder deferred over a weekend is re-checked on Monday, and a job
redelivered by the queue finds its delivery already claimed. The message is rendered
whole before anything is claimed or sent. Outcomes:

- permanent failure: recorded, the address suppressed if it is invalid, and the job
  decided again — the next channel of the plan takes over;
- transient failure: recorded, retried later through the agenda, re-decided then;
  given up after five days;
- unknown outcome (timeout, provider 5xx): recorded as `unknown` and not resent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy.engine import Connection

from channels.base import Channel, Message, PermanentError, TransientError, UnknownOutcome
from schedules import Decision, Profiles, decide
from schedules.facts import Facts
from worker import escalation, unsubscribe
from worker.agenda import Agenda
from worker.clock import Clock
from worker.contact_log import Claim, ContactLog, Known
from worker.intake import parse_job
from worker.job import Job
from worker.log_writer import LogWriter
from worker.masking import mask
from worker.render import Rendered, Renderer, TemplateError, message_context, opt_out_line
from worker.settings import ConfigError, Settings
from worker.throttle import Throttle

GIVE_UP_AFTER = timedelta(days=5)
RETRY_BASE, RETRY_MAX = timedelta(minutes=30), timedelta(hours=6)


@dataclass
class Services:
    log: ContactLog
    write: LogWriter  # the log's writes from the event loop go through here (group commit)
    renderer: Renderer
    channels: Mapping[str, Channel]
    agenda: Agenda
    throttle: Throttle
    clock: Clock
    profiles: Profiles
    settings: Settings


class Pipeline:
    def __init__(self, services: Services) -> None:
        if not services.settings.secret_key:
            raise ConfigError("DUNNING_SECRET_KEY is not set: unsubscribe links cannot be signed")
        self.s = services
        self.secret: str = services.settings.secret_key

    async def handle(self, payload: Mapping[str, Any]) -> str:
        """Process one queued reminder; returns what happened, in one word."""
        s = self.s
        now = s.clock.now()
        slot = payload.get("slot")  # a sender slot reserved on an earlier pass (see `worker.throttle`)
        payload = {key: value for key, value in payload.items() if key != "slot"}
        parsed = parse_job(payload.get("job"), s.profiles, "queue")
        if parsed.job is None:
            reason, kept = "; ".join(parsed.errors), _dump(payload)
            await s.write(lambda c: s.log.dead_letter("worker", reason, kept, now, parsed.job_id, conn=c))
            return "rejected"
        job = parsed.job
        if "notify" in payload:  # the supervisor's email about an escalation, tried again
            return await self.notify(job, payload, now)
        addresses = tuple(a for a in (job.debtor.email, job.debtor.phone) if a)
        for _ in range(6):  # a permanent failure hands over to the next channel; news since `known`: decide again
            known = s.log.known(job.debtor.account_id, job.invoice.id, job.job_id, now, addresses)
            balance = self.balance(job, known.facts)
            facts = known.facts if balance > 0 else known.facts.model_copy(update={"paid": True})
            decision = decide(job, now, facts, s.profiles[job.profile])
            if decision.action == "send":
                outcome = await self.deliver(job, decision, payload, now, known, balance, slot)
                if outcome not in ("next-channel", "changed"):
                    return outcome
                continue
            await self.note(job, "decision", decision.action, now, detail=decision.to_json())
            if decision.action == "skip":
                if "S-DISPUTE" in decision.rules:
                    s.agenda.park(job.job_id, dict(payload))  # resumes when the dispute is resolved
                return "skipped"
            if decision.action == "escalate":
                await self.escalate(job, decision, now)
                return "escalated"
            assert decision.action == "defer" and decision.until is not None
            self.later(job, payload, decision.until)
            return "deferred"
        return "failed"

    async def escalate(self, job: Job, decision: Decision, now: datetime) -> None:
        """Hand the case to a person: recorded once, the cadence stopped, the supervisor told."""
        s = self.s
        opened = await s.write(lambda c: s.log.escalate(job.job_id, job.invoice.id, job.debtor.account_id,
                                                         decision.reasons, now, conn=c))
        if not opened:
            return
        s.agenda.cancel_invoice(job.invoice.id)
        notice = {"reasons": list(decision.reasons), "escalated_at": now.isoformat(), "attempt": 0}
        await self.notify(job, {"job": job.to_json(), "notify": notice}, now)

    async def notify(self, job: Job, payload: Mapping[str, Any], now: datetime) -> str:
        """Email the supervisor the case. A transient failure (the relay busy or away) is
        tried again from the agenda, like a reminder, for up to `GIVE_UP_AFTER`; the case
        is in `dunning escalations` meanwhile, and the log says each try."""
        s = self.s
        notice = payload["notify"]
        escalated_at = datetime.fromisoformat(notice["escalated_at"])
        to, sender = s.settings.escalation_email, s.channels.get("email")
        if to is None or sender is None:
            missing = "DUNNING_ESCALATION_EMAIL is not set" if to is None else "no email channel is configured"
            await self.note(job, "escalation", "not-notified", now, error_text=missing)
            return "escalated"
        facts = s.log.facts_for(job.debtor.account_id, job.invoice.id, job.job_id, now)
        message = Message(key=f"{job.invoice.id}/escalation", channel="email", to=to,
                          subject=escalation.subject(job, escalated_at),
                          text=escalation.body(job, notice["reasons"], s.log.history(invoice=job.invoice.id),
                                               escalated_at, self.balance(job, facts)),
                          locale=s.settings.default_locale, created_at=escalated_at)
        try:
            result = await sender.send(message)
        except TransientError as error:
            attempt = int(notice["attempt"]) + 1
            if now - escalated_at < GIVE_UP_AFTER:
                at = now + min(RETRY_BASE * 2 ** (attempt - 1), RETRY_MAX)
                await self.note(job, "escalation", "retry", now, provider="smtp", error_code=error.code,
                                error_text=error.text, detail={"attempt": attempt, "at": at.isoformat()})
                s.agenda.schedule(f"{job.invoice.id}/escalation", {**payload, "notify": {**notice,
                                                                                       "attempt": attempt}}, at)
                return "retry"
            await self.note(job, "escalation", "not-notified", now, provider="smtp", error_code=error.code,
                            error_text=f"gave up after {GIVE_UP_AFTER.days} days: {error.text}")
            return "escalated"
        except (PermanentError, UnknownOutcome) as error:
            await self.note(job, "escalation", "not-notified", now, provider="smtp", error_code=error.code,
                            error_text=error.text)
            return "escalated"
        await self.note(job, "escalation", "notified", now, provider=result.provider,
                        provider_message_id=result.provider_message_id, detail={"to": mask("email", to)})
        return "escalated"

    def balance(self, job: Job, facts: Facts) -> Decimal:
        """What is still owed: the job's amount less payments reported since intake accepted it."""
        if not facts.payments:
            return job.invoice.amount_due
        return job.invoice.amount_due - facts.paid_since(self.s.log.accepted_at(job.job_id))

    async def deliver(self, job: Job, decision: Decision, payload: Mapping[str, Any], now: datetime, known: Known,
                      balance: Decimal, slot: str | None = None) -> str:
        """Render, claim (with the decision, in one transaction, refused if the facts changed
        since `known`), send, record the outcome."""
        s = self.s
        channel = decision.channel or ""
        address = job.debtor.email if channel == "email" else job.debtor.phone
        assert address is not None and decision.stage is not None
        unsubscribe_url = (unsubscribe.url(s.settings.public_url, self.secret, job.debtor.account_id,
                                           channel, address) if channel == "email" else None)
        try:
            rendered = self.render(job, decision, now, unsubscribe_url, balance)
        except TemplateError as error:
            reason, kept = str(error), _dump(payload)

            def failed(conn: Connection) -> None:
                s.log.record("decision", decision.action, now, job_id=job.job_id, invoice_id=job.invoice.id,
                             account_id=job.debtor.account_id, detail=decision.to_json(), conn=conn)
                s.log.record("delivery", "failed", now, job_id=job.job_id, invoice_id=job.invoice.id,
                             account_id=job.debtor.account_id, error_code="template", error_text=reason, conn=conn)
                s.log.dead_letter("template", reason, kept, now, job.job_id, conn=conn)

            await s.write(failed)
            return "failed"
        sender = s.channels.get(channel)
        if sender is not None and sender.rate is not None and slot != sender.rate.sender:
            wait = s.throttle.reserve(sender.rate, sender.cost(rendered.text))
            if wait > 0:  # come back for the reserved slot; nothing is claimed yet, so nothing is out
                slot_at = s.clock.now() + timedelta(seconds=wait)  # read again: the slot is counted from now
                self.later(job, {**payload, "slot": sender.rate.sender}, slot_at)
                return "throttled"
        claim = Claim(delivery_key=f"{job.job_id}#{channel}", job_id=job.job_id, invoice_id=job.invoice.id,
                      account_id=job.debtor.account_id, channel=channel, recipient=address, stage=decision.stage,
                      template=rendered.template, template_version=rendered.version, reasons=decision.reasons,
                      rules=decision.rules, zones=decision.zones)
        detail = decision.to_json()
        delivery = await s.write(lambda c: s.log.claim(claim, now, decision=detail, known=known, conn=c))
        if delivery is None:
            return "changed"  # paid, opted out... while this was being prepared
        if not delivery.fresh:
            resend = delivery.status == "retry" or (delivery.status == "claimed" and channel == "email")
            if not resend:
                if delivery.status == "claimed":  # a worker died between claim and answer: SMS/voice may be out
                    await self.outcome(job, "unknown", now, delivery.id,
                                       error_text="worker stopped before the provider answered; not resent")
                    return "unknown"
                return "duplicate"
        s.log.keep_templates(rendered.templates, now)
        if sender is None:
            await self.outcome(job, "failed", now, delivery.id, error_code="not-configured",
                               error_text=f"no {channel} channel is configured")
            return "next-channel"
        message = Message(key=delivery.key, channel=channel, to=address, text=rendered.text, locale=rendered.locale,
                          subject=rendered.subject, html=rendered.html, unsubscribe_url=unsubscribe_url,
                          created_at=now, valid_until=decision.window_end)
        try:
            result = await sender.send(message)
        except PermanentError as error:
            await s.write(partial(self.refused, job=job, delivery_id=delivery.id, channel=channel, address=address,
                                  error=error, now=now))
            return "next-channel"
        except UnknownOutcome as error:
            await self.outcome(job, "unknown", now, delivery.id, provider=_provider(channel),
                               error_code=error.code, error_text=error.text)
            return "unknown"
        except TransientError as error:
            return await self.retry(job, payload, delivery.id, channel, error, decision, now)
        await self.outcome(job, "sent", now, delivery.id, provider=result.provider,
                           provider_message_id=result.provider_message_id)
        return "sent"

    def render(self, job: Job, decision: Decision, now: datetime, unsubscribe_url: str | None,
               balance: Decimal | None = None) -> Rendered:
        assert decision.stage is not None and decision.channel is not None and decision.at is not None
        channel = decision.channel
        consumer = job.debtor.kind == "person"
        opt_out = opt_out_line(job.debtor.locale, channel, unsubscribe_url) if consumer else None
        invoice = job.invoice if balance in (None, job.invoice.amount_due) else job.invoice.model_copy(
            update={"amount_due": balance})
        context = message_context(invoice, job.debtor, decision.stage, decision.at.date(), self.s.settings.sender,
                                  opt_out)
        return self.s.renderer.render(decision.stage, channel, job.debtor.locale, context)

    def refused(self, conn: Connection, job: Job, delivery_id: int, channel: str, address: str,
                error: PermanentError, now: datetime) -> None:
        """A permanent failure: recorded, and an invalid address suppressed for good."""
        self.outcome_in(conn, job, "failed", now, delivery_id, provider=_provider(channel), error_code=error.code,
                        error_text=error.text)
        if error.invalid_address:
            self.s.log.suppress(job.debtor.account_id, address, channel, f"invalid address: {error.text}", now,
                                code=error.code, conn=conn)

    async def retry(self, job: Job, payload: Mapping[str, Any], delivery_id: int, channel: str,
                    error: TransientError, decision: Decision, now: datetime) -> str:
        s = self.s
        attempt = int(payload.get("attempt", 0)) + 1
        first = datetime.fromisoformat(payload["first_tried"]) if payload.get("first_tried") else now
        if now - first >= GIVE_UP_AFTER:
            reason, kept = f"{error.code}: {error.text}", _dump(payload)

            def given_up(conn: Connection) -> None:
                self.outcome_in(conn, job, "failed", now, delivery_id, provider=_provider(channel),
                                error_code=error.code,
                                error_text=f"gave up after {GIVE_UP_AFTER.days} days: {error.text}")
                s.log.dead_letter("retries", reason, kept, now, job.job_id, conn=conn)

            await s.write(given_up)
            return "failed"
        if error.code == "30036" and decision.window_end is not None:
            at = decision.window_end  # the window is closing: decide again when it has (next window)
        elif error.retry_after is not None:
            at = now + timedelta(seconds=error.retry_after)
        else:
            at = now + min(RETRY_BASE * 2 ** (attempt - 1), RETRY_MAX)
        await self.outcome(job, "retry", now, delivery_id, provider=_provider(channel), error_code=error.code,
                           error_text=error.text, detail={"attempt": attempt, "at": at.isoformat()})
        self.later(job, {**payload, "attempt": attempt, "first_tried": first.isoformat()}, at)
        return "retry"

    async def outcome(self, job: Job, status: str, now: datetime, delivery_id: int, **details: Any) -> None:
        """A status event of a delivery, filed under its job, invoice and account."""
        await self.s.write(lambda conn: self.outcome_in(conn, job, status, now, delivery_id, **details))

    def outcome_in(self, conn: Connection, job: Job, status: str, now: datetime, delivery_id: int,
                   **details: Any) -> None:
        self.s.log.record("delivery", status, now, delivery_id=delivery_id, job_id=job.job_id,
                          invoice_id=job.invoice.id, account_id=job.debtor.account_id, conn=conn, **details)

    async def note(self, job: Job, kind: str, status: str, now: datetime, **details: Any) -> None:
        """An event about the job (a decision, an escalation)."""
        await self.s.write(lambda conn: self.s.log.record(kind, status, now, job_id=job.job_id,
                                                           invoice_id=job.invoice.id,
                                                           account_id=job.debtor.account_id, conn=conn, **details))

    def later(self, job: Job, payload: Mapping[str, Any], at: datetime) -> None:
        """Come back at `at`, by way of the agenda however short the wait: no worker
        thread or process memory holds the job meanwhile, and a crash loses nothing."""
        self.s.agenda.schedule(job.job_id, dict(payload), at)


def _dump(payload: Mapping[str, Any]) -> str:
    return json.dumps(dict(payload), ensure_ascii=False, default=str)


def _provider(channel: str) -> str:
    return "smtp" if channel == "email" else "twilio"


def payload_for(job: Job) -> dict[str, Any]:
    """What goes on the queue for a job: the job as JSON, and the retry bookkeeping."""
    return {"job": job.to_json(), "attempt": 0, "first_tried": None}
