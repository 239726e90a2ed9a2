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

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Literal, cast

import sqlalchemy.exc
from sqlalchemy.engine import Connection

from channels.base import Channel, ChannelError, Message, NextWindow, PermanentError, TransientError, UnknownOutcome
from schedules import Decision, decide
from schedules.facts import Facts
from schedules.zones import local_day
from worker import metrics
from worker.backoff import OUTAGE, REMINDER
from worker.contact_log import Claim, Delivery, Known
from worker.contact_log.kinds import DeliveryStatus, Event, Kind, NoticeStatus
from worker.errors import ConfigError
from worker.jobs.contract import Job
from worker.jobs.parse import parse_job
from worker.masking import mask
from worker.messages import unsubscribe
from worker.messages.context import compose
from worker.messages.render import Rendered, TemplateError
from worker.pipeline import escalation
from worker.pipeline.services import Services
from worker.pipeline.standing import as_decided, owed
from worker.queue.envelope import Envelope, Notice, envelope_for

logger = logging.getLogger(__name__)
# What became of one message from the queue (`Pipeline.handle`): the actor logs it.
Outcome = Literal["sent", "deferred", "skipped", "escalated", "retry", "throttled", "waiting", "unknown", "failed",
                  "duplicate", "rejected"]
Step = Outcome | Literal["next-channel", "changed"]  # inside: try the next channel; facts changed, decide again


@dataclass(frozen=True)
class Handled:
    outcome: Outcome
    job_id: str | None = None
    channel: str | None = None
GIVE_UP_AFTER = timedelta(days=5)
LOG_OUTAGES = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError)



class Pipeline:
    def __init__(self, services: Services) -> None:
        if not services.settings.secret_key:
            raise ConfigError("DUNNING_SECRET_KEY is not set: unsubscribe links cannot be signed")
        self.s = services
        self.secret: str = services.settings.secret_key
        self.pending: set[asyncio.Future[Any]] = set()  # outcomes not yet taken by the log (`durable`)
        # SQLite (WAL): a read never waits for a writer, and handing it to a thread and back
        # cost more than the read (bench/profile.py: 0.95 -> 0.72 ms of hand-offs a reminder).
        # A PostgreSQL read may wait on a lock or the network: in a thread (`standing`).
        self.reads_inline = services.log.engine.dialect.name == "sqlite"

    async def handle(self, payload: Mapping[str, Any]) -> Outcome:
        """Process one queued reminder; returns what happened, in one word."""
        return (await self.run(payload)).outcome

    async def run(self, payload: Mapping[str, Any]) -> Handled:
        """`handle`, saying also which job and channel (for the actor's log line)."""
        s = self.s
        now = s.clock.now()
        envelope = cast(Envelope, {key: value for key, value in payload.items() if key != "slot"})
        slot = payload.get("slot")  # a sender slot reserved on an earlier pass (see `worker.queue.throttle`)
        # Trusted: intake validated the job before it queued it; its addresses are not checked again.
        parsed = parse_job(envelope.get("job"), s.profiles, "queue", trusted=True)
        if parsed.job is None:
            reason, kept = "; ".join(parsed.errors), _dump(envelope)
            await s.write(lambda c: s.log.dead_letter("worker", reason, kept, now, parsed.job_id, conn=c))
            return Handled("rejected", parsed.job_id)
        job = parsed.job
        if "notify" in envelope:  # the supervisor's email about an escalation, tried again
            return Handled(await self.notify(job, envelope, now), job.job_id, "email")
        addresses = tuple(a for a in (job.debtor.email, job.debtor.phone) if a)
        for _ in range(6):  # a permanent failure hands over to the next channel; news since `known`: decide again
            known, erased, balance = (self.standing(job, now, addresses) if self.reads_inline
                                      else await asyncio.to_thread(self.standing, job, now, addresses))
            if known.cancelled:  # the billing system took it back (DELETE /v1/jobs/...): logged there
                return Handled("skipped", job.job_id)
            if erased:  # its person was erased since it was queued
                logger.info("dropped %s: its account was erased after it was accepted", job.job_id)
                return Handled("skipped", job.job_id)
            decision = decide(job, now, as_decided(known.facts, balance), s.profiles[job.profile])
            _counted(decision)
            if decision.action == "send":
                step = await self.deliver(job, decision, envelope, now, known, balance, slot)
                if step not in ("next-channel", "changed"):
                    return Handled(cast(Outcome, step), job.job_id, decision.channel)
                continue
            await self.note(job, Kind.DECISION, decision.action, now, detail=decision.to_json())
            if decision.action == "skip":
                if "S-DISPUTE" in decision.rules or "S-PAUSE" in decision.rules:
                    s.agenda.park(job.job_id, envelope)  # resumes when the dispute is resolved, or the pause ends
                return Handled("skipped", job.job_id)
            if decision.action == "escalate":
                await self.escalate(job, decision, now)
                return Handled("escalated", job.job_id)
            assert decision.action == "defer" and decision.until is not None
            self.later(job, envelope, decision.until)
            return Handled("deferred", job.job_id)
        return Handled("failed", job.job_id)

    async def escalate(self, job: Job, decision: Decision, now: datetime) -> None:
        """Hand the case to a person: recorded once, the cadence stopped, the supervisor told."""
        s = self.s
        opened = await s.write(lambda c: s.log.escalate(job.job_id, job.invoice.id, job.debtor.account_id,
                                                         decision.reasons, now, conn=c), self.chains(job))
        if not opened:
            return
        s.agenda.cancel_invoice(job.invoice.id)
        notice: Notice = {"reasons": list(decision.reasons), "escalated_at": now.isoformat(), "attempt": 0}
        await self.notify(job, {**envelope_for(job), "notify": notice}, now)

    async def notify(self, job: Job, payload: Envelope, now: datetime) -> Outcome:
        """Email the supervisor the case. A transient failure (the relay busy or away) is
        tried again from the agenda, like a reminder, for up to `GIVE_UP_AFTER`; the case
        is in `dunning escalations` meanwhile, and the log says each try."""
        s = self.s
        notice = payload["notify"]
        escalated_at = datetime.fromisoformat(notice["escalated_at"])
        to, sender = s.settings.escalation_email, s.channels.get("email")
        if to is None or sender is None:
            missing = "DUNNING_ESCALATION_EMAIL is not set" if to is None else "no email channel is configured"
            await self.note(job, Kind.ESCALATION, NoticeStatus.NOT_NOTIFIED, now, error_text=missing)
            return "escalated"
        history, balance = await asyncio.to_thread(self.case, job, now)
        message = Message(key=f"{job.invoice.id}/escalation", channel="email", to=to,
                          subject=escalation.subject(job, escalated_at),
                          text=escalation.body(job, notice["reasons"], history, escalated_at, balance),
                          locale=s.settings.default_locale, created_at=escalated_at)
        try:
            result = await sender.send(message)
        except TransientError as error:
            attempt = int(notice["attempt"]) + 1
            if now - escalated_at < GIVE_UP_AFTER:
                at = now + REMINDER.after(attempt)
                await self.note(job, Kind.ESCALATION, NoticeStatus.RETRY, now, provider=sender.provider,
                                error_code=error.code,
                                error_text=error.text, detail={"attempt": attempt, "at": at.isoformat()})
                s.agenda.schedule(f"{job.invoice.id}/escalation", {**payload, "notify": {**notice,
                                                                                       "attempt": attempt}}, at)
                return "retry"
            await self.note(job, Kind.ESCALATION, NoticeStatus.NOT_NOTIFIED, now, provider=sender.provider,
                            error_code=error.code,
                            error_text=f"gave up after {GIVE_UP_AFTER.days} days: {error.text}")
            return "escalated"
        except (PermanentError, UnknownOutcome) as error:
            await self.note(job, Kind.ESCALATION, NoticeStatus.NOT_NOTIFIED, now, provider=sender.provider,
                            error_code=error.code,
                            error_text=error.text)
            return "escalated"
        await self.note(job, Kind.ESCALATION, NoticeStatus.NOTIFIED, now, provider=result.provider,
                        provider_message_id=result.provider_message_id, detail={"to": mask("email", to)})
        return "escalated"

    def standing(self, job: Job, now: datetime, addresses: tuple[str, ...]) -> tuple[Known, bool, Decimal]:
        """What the log knows of the job now, whether its person was erased since it was
        queued, and what is still owed. On PostgreSQL run in a thread (`run`), never on
        the event loop, where a read waiting on the database would stop every reminder
        of the process — the rule the writer (`worker.db.writer`) keeps for writes."""
        s = self.s
        known = s.log.known(job.debtor.account_id, job.invoice.id, job.job_id, now, addresses)
        erased = bool(known.erased and s.jobs.erased_jobs([job.job_id]))
        return known, erased, self.balance(job, known.facts)

    def case(self, job: Job, now: datetime) -> tuple[list[dict[str, Any]], Decimal]:
        """The invoice's history and balance for the supervisor's email (read in a thread)."""
        s = self.s
        facts = s.log.facts_for(job.debtor.account_id, job.invoice.id, job.job_id, now)
        return list(s.log.history(invoice=job.invoice.id)), self.balance(job, facts)

    def balance(self, job: Job, facts: Facts) -> Decimal:
        """What is still owed (`standing.owed`); when was the job accepted is asked only
        when there are payments."""
        return owed(job.invoice.amount_due, facts, self.s.log.accepted_at(job.job_id) if facts.payments else None)

    async def deliver(self, job: Job, decision: Decision, payload: Envelope, now: datetime, known: Known,
                      balance: Decimal, slot: str | None = None) -> Step:
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
                s.log.record(Event(Kind.DECISION, decision.action, **_about(job), detail=decision.to_json()), now, conn)
                s.log.record(Event(Kind.DELIVERY, DeliveryStatus.FAILED, **_about(job), error_code="template",
                                   error_text=reason), now, conn)
                s.log.dead_letter("template", reason, kept, now, job.job_id, conn=conn)

            await s.write(failed, self.chains(job))
            return "failed"
        sender = s.channels.get(channel)
        if sender is not None and sender.rate is not None and slot != sender.rate.sender:
            wait = s.throttle.reserve(sender.rate, sender.cost(rendered.text))
            if wait > 0:  # come back for the reserved slot; nothing is claimed yet, so nothing is out
                slot_at = s.clock.now() + timedelta(seconds=wait)  # read again: the slot is counted from now
                self.later(job, {**payload, "slot": sender.rate.sender}, slot_at)
                return "throttled"
        assert decision.at is not None
        claim = Claim(delivery_key=f"{job.job_id}#{channel}", job_id=job.job_id, invoice_id=job.invoice.id,
                      account_id=job.debtor.account_id, channel=channel, recipient=address, stage=decision.stage,
                      template=rendered.template, template_version=rendered.version, reasons=decision.reasons,
                      rules=decision.rules, zones=decision.zones,
                      message={"sha256": rendered.digest, "locale": rendered.locale,
                               "templates": [t.version for t in rendered.templates],
                               "today": local_day(job.debtor, decision.at).isoformat(),
                               "balance": None if balance == job.invoice.amount_due else str(balance)})
        detail = decision.to_json()
        claim = s.log.sealed(claim)  # the recipient sealed here, not under the log's lock
        delivery = await s.write(lambda c: s.log.claim(claim, now, decision=detail, known=known, conn=c),
                                 self.chains(job))
        if delivery is None:
            return "changed"  # paid, opted out... while this was being prepared
        claimed = time.monotonic()
        if not delivery.fresh and (stop := await self.claimed_before(job, payload, delivery, channel, now)):
            return stop
        if s.log.unkept(rendered.templates):  # a version's first use in this process: keep its source
            await asyncio.to_thread(s.log.keep_templates, rendered.templates, now)
        if sender is None:
            await self.outcome(job, DeliveryStatus.FAILED, now, delivery.id, error_code="not-configured",
                               error_text=f"no {channel} channel is configured")
            return "next-channel"
        message = Message(key=delivery.key, channel=channel, to=address, text=rendered.text, locale=rendered.locale,
                          subject=rendered.subject, html=rendered.html, unsubscribe_url=unsubscribe_url,
                          created_at=now, valid_until=decision.window_end)
        step = await self.exchange(job, decision, payload, delivery, sender, message, now)
        metrics.CLAIM_TO_OUTCOME.labels(channel).observe(time.monotonic() - claimed)
        return step

    async def exchange(self, job: Job, decision: Decision, payload: Envelope, delivery: Delivery, sender: Channel,
                       message: Message, now: datetime) -> Step:
        """Send a claimed message and record what the provider answered."""
        s, channel, address = self.s, message.channel, message.to
        try:
            result = await sender.send(message)
        except PermanentError as error:
            _answered(sender, "permanent", error)
            await self.durable(partial(self.refused, job=job, delivery_id=delivery.id, channel=sender,
                                       address=address, error=error, now=now), job)
            return "next-channel"
        except UnknownOutcome as error:
            _answered(sender, "unknown", error)
            await self.outcome(job, DeliveryStatus.UNKNOWN, now, delivery.id, provider=sender.provider,
                               error_code=error.code, error_text=error.text)
            if channel == "email" and payload.get("resend") != delivery.key:
                # RFC 5321 §6.1: data without a reply is not delivered; an MTA sends it again.
                # Once, after the lease, with the same Message-ID (a mailbox that has it drops
                # the copy), recorded as a second attempt.
                self.later(job, {**payload, "resend": delivery.key}, now + s.settings.claim_lease)
            return "unknown"
        except TransientError as error:
            _answered(sender, "transient", error)
            return await self.retry(job, payload, delivery.id, sender.provider, error, decision, now)
        except Exception as error:  # not one of the channel's three answers: a bug, the provider may have acted
            _answered(sender, "error")
            reason, kept = f"{type(error).__name__} from the {channel} channel: {error}"[:500], _dump(payload)
            logger.exception("unexpected error from the %s channel (recorded as unknown, not resent)", channel)

            def unknown(conn: Connection) -> None:
                self.outcome_in(conn, job, DeliveryStatus.UNKNOWN, now, delivery.id, provider=sender.provider,
                                error_code="error", error_text=reason)
                s.log.dead_letter("channel", reason, kept, now, job.job_id, conn=conn)

            await self.durable(unknown, job)
            return "unknown"
        _answered(sender, "sent")
        await self.outcome(job, DeliveryStatus.SENT, now, delivery.id, provider=result.provider,
                           provider_message_id=result.provider_message_id)
        return "sent"

    async def claimed_before(self, job: Job, payload: Envelope, delivery: Delivery, channel: str,
                             now: datetime) -> Step | None:
        """This delivery was claimed before (a redelivered message, a retry, a resend):
        None to send now, or what became of the job instead."""
        s = self.s
        if delivery.status == DeliveryStatus.CLAIMED and channel == "email":
            # Claimed before, no outcome: a worker died between the claim and the answer, or
            # another copy of this job is sending right now. Wait out the claim's lease, so a
            # live sender records its outcome first; then send again with the same Message-ID,
            # recorded as a second attempt (exports and caps count every contact).
            lease_end = delivery.claimed_at + s.settings.claim_lease
            if now < lease_end:
                self.later(job, payload, lease_end)
                return "waiting"
            await self.durable(lambda c: s.log.reclaim(delivery.id, now, "the attempt before has no outcome: "
                                                                         "its worker stopped", conn=c), job)
        elif delivery.status == DeliveryStatus.CLAIMED:  # a worker died between claim and answer: SMS/voice out?
            await self.outcome(job, DeliveryStatus.UNKNOWN, now, delivery.id,
                               error_text="worker stopped before the provider answered; not resent")
            return "unknown"
        elif delivery.status == DeliveryStatus.UNKNOWN and payload.get("resend") == delivery.key:
            await self.durable(lambda c: s.log.reclaim(delivery.id, now, "no reply to the message's data: sent "
                                                                         "again with the same Message-ID", conn=c), job)
        elif delivery.status != DeliveryStatus.RETRY:
            return "duplicate"
        return None

    def render(self, job: Job, decision: Decision, now: datetime, unsubscribe_url: str | None,
               balance: Decimal | None = None) -> Rendered:
        assert decision.stage is not None and decision.channel is not None and decision.at is not None
        return compose(self.s.renderer, job, decision.stage, decision.channel, local_day(job.debtor, decision.at),
                       self.s.settings.sender, unsubscribe_url, balance)

    def refused(self, conn: Connection, job: Job, delivery_id: int, channel: Channel, address: str,
                error: PermanentError, now: datetime) -> None:
        """A permanent failure: recorded, and an invalid address suppressed for good."""
        self.outcome_in(conn, job, DeliveryStatus.FAILED, now, delivery_id, provider=channel.provider,
                        error_code=error.code, error_text=error.text)
        if error.invalid_address:
            self.s.log.suppress(job.debtor.account_id, address, channel.name, f"invalid address: {error.text}", now,
                                code=error.code, conn=conn)

    async def retry(self, job: Job, payload: Envelope, delivery_id: int, provider: str,
                    error: TransientError, decision: Decision, now: datetime) -> Outcome:
        s = self.s
        attempt = int(payload.get("attempt", 0)) + 1
        first_tried = payload.get("first_tried")  # absent in messages queued by older versions
        first = datetime.fromisoformat(first_tried) if first_tried else now
        if now - first >= GIVE_UP_AFTER:
            reason, kept = f"{error.code}: {error.text}", _dump(payload)

            def given_up(conn: Connection) -> None:
                self.outcome_in(conn, job, DeliveryStatus.FAILED, now, delivery_id, provider=provider,
                                error_code=error.code,
                                error_text=f"gave up after {GIVE_UP_AFTER.days} days: {error.text}")
                s.log.dead_letter("retries", reason, kept, now, job.job_id, conn=conn)

            await self.durable(given_up, job)
            return "failed"
        if isinstance(error, NextWindow) and decision.window_end is not None:
            at = decision.window_end  # the window is closing: decide again when it has (next window)
        elif error.retry_after is not None:
            at = now + timedelta(seconds=error.retry_after)
        else:
            at = now + REMINDER.after(attempt)
        await self.outcome(job, DeliveryStatus.RETRY, now, delivery_id, provider=provider, error_code=error.code,
                           error_text=error.text, detail={"attempt": attempt, "at": at.isoformat()})
        self.later(job, {**payload, "attempt": attempt, "first_tried": first.isoformat()}, at)
        return "retry"

    async def outcome(self, job: Job, status: str, now: datetime, delivery_id: int, **details: Any) -> None:
        """A status event of a delivery, filed under its job, invoice and account."""
        await self.durable(lambda conn: self.outcome_in(conn, job, status, now, delivery_id, **details), job)

    async def durable(self, write: Callable[[Connection], Any], job: Job) -> Any:
        """A write that follows a claim (the provider's answer): kept, in this process, until
        the log takes it. A database restart must never make us forget that a message went
        out, or the job would be tried again and sent twice. The write is shielded: it goes
        on even if the job's own task is cancelled (its time limit). A process that dies
        meanwhile loses it: then the claim without an outcome is what the next worker
        finds (a second attempt, after the lease)."""
        task = asyncio.ensure_future(self._persist(write, self.chains(job)))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return await asyncio.shield(task)

    async def _persist(self, write: Callable[[Connection], Any], chains: Collection[int]) -> Any:
        since = None
        for delay in OUTAGE.waits():
            try:
                result = await self.s.write(write, chains)
            except LOG_OUTAGES as error:
                if since is None:
                    since = time.monotonic()
                    logger.warning("the contact log is unavailable (%s); keeping an outcome until it is back",
                                   type(error).__name__)
                await asyncio.sleep(delay)
                continue
            if since is not None:
                logger.warning("an outcome kept for %.0f s is recorded", time.monotonic() - since)
            return result

    def outcome_in(self, conn: Connection, job: Job, status: str, now: datetime, delivery_id: int,
                   **details: Any) -> None:
        self.s.log.record(Event(Kind.DELIVERY, status, delivery_id=delivery_id, **_about(job), **details), now, conn)

    async def note(self, job: Job, kind: Kind, status: str, now: datetime, **details: Any) -> None:
        """An event about the job (a decision, an escalation)."""
        await self.s.write(lambda conn: self.s.log.record(Event(kind, status, **_about(job), **details), now, conn),
                           self.chains(job))

    def chains(self, job: Job) -> set[int]:
        """The log's chains a write about `job` holds: its account's, and its addresses'
        (a claim checks its recipient under it; a refusal may suppress it)."""
        log = self.s.log
        return log.chains_of([job.debtor.account_id],
                             log.vault.indexes(a for a in (job.debtor.email, job.debtor.phone) if a))

    def later(self, job: Job, payload: Envelope, at: datetime) -> None:
        """Come back at `at`, by way of the agenda however short the wait: no worker
        thread or process memory holds the job meanwhile, and a crash loses nothing."""
        self.s.agenda.schedule(job.job_id, payload, at)


def _counted(decision: Decision) -> None:
    """A decision, and the rules behind it, in the metrics."""
    metrics.DECISIONS.labels(decision.action).inc()
    for rule in decision.rules:
        metrics.DECISION_RULES.labels(decision.action, rule).inc()


def _answered(sender: Channel, result: str, error: ChannelError | None = None) -> None:
    """A provider's answer in the metrics: the send by its result, a failure by its code's family."""
    metrics.SENDS.labels(sender.name, sender.provider, result).inc()
    if error is not None:
        metrics.PROVIDER_ERRORS.labels(sender.name, sender.provider, error.code_class).inc()


def _about(job: Job) -> dict[str, Any]:
    """The ids an event about a job is filed under."""
    return {"job_id": job.job_id, "invoice_id": job.invoice.id, "account_id": job.debtor.account_id}


def _dump(payload: Mapping[str, Any]) -> str:
    return json.dumps(dict(payload), ensure_ascii=False, default=str)

