"""`dunning demo`: the whole way of a reminder, on this machine, with no credentials.

Starts a private redis-server, an SMTP server that writes .eml files and the Twilio
sandbox; queues the bundled samples (12 business invoices, the portfolio, and 2 US
consumer debts: every stage, zh-CN and en-US debtors in five zones, one without SMS
consent, one with an invalid phone, one paid, one with a promise to pay); runs the
worker on a clock set to Wednesday 2 December 2026, 10:00 in Shanghai, then moves
the clock on so that deferred reminders come due; prints the contact log and where
the messages are; stops all it started.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from worker import policy, wiring
from worker.contact_log import ContactLog
from worker.contact_log.kinds import DeliveryStatus, Event, InvoiceStatus, Kind
from worker.jobs.intake import submit
from worker.jobs.parse import read_jobs
from worker.jobs.samples import sample_bytes, sample_facts, sample_jobs
from worker.local.stack import Stack
from worker.masking import mask
from worker.settings import Settings


def run(start: datetime, console: Console, directory: Path = Path("var/demo")) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    stack = Stack(directory.resolve()).start()
    try:
        os.environ.update(stack.env())
        log = wiring.log(Settings.from_env(stack.env()), migrate=True)
        stack.set_clock(start)
        _billing_events(log, start)
        known = policy.profiles(Settings.from_env(stack.env()).profile_dir)
        intake = submit(read_jobs(sample_bytes(), known), wiring.books(log).jobs, known, stack.broker, start)
        console.print(f"queued {intake.accepted} reminders at {start.isoformat()} "
                      f"(clock: Redis key dunning:clock; worker log: {directory / 'worker.log'})")
        stack.start_worker(processes=1, threads=8)
        for moment in _steps(start):
            stack.set_clock(moment)
            stack.wait_idle(timeout=120)
            console.print(f"  clock {moment.isoformat()}: done")
        stack.stop_workers()
        console.print(_table(log))
        _where(console, directory, stack)
    finally:
        stack.stop()


def _billing_events(log: ContactLog, now: datetime) -> None:
    """What billing told us before the run: one invoice is paid, one debtor promised."""
    facts = sample_facts()
    for job in sample_jobs():
        known = facts.get(job.job_id, {})
        invoice, account = job.invoice.id, job.debtor.account_id
        if known.get("paid"):
            log.record(Event(Kind.INVOICE, InvoiceStatus.PAID, invoice_id=invoice, account_id=account,
                             detail={"source": "demo"}), now)
        if known.get("promised_until"):
            log.record(Event(Kind.INVOICE, InvoiceStatus.PROMISED, invoice_id=invoice, account_id=account,
                             detail={"until": known["promised_until"]}), now)


def _steps(start: datetime) -> list[datetime]:
    """Now; then 09:30 the same day in London, New York and Los Angeles, where reminders
    waited for the morning; then the next two Mondays in Shanghai (a promise ends, a
    pre-due reminder comes due)."""
    day = start.date().isoformat()
    mornings = [datetime.fromisoformat(f"{day}T09:30:00{offset}") for offset in ("+00:00", "-05:00", "-08:00")]
    return [start, *mornings, start + timedelta(days=5), start + timedelta(days=12)]


def _table(log: ContactLog) -> Table:
    table = Table("UTC", "job", "what", "channel", "to", "template / reasons", title="Contact log", show_lines=False)
    for row in log.history():
        kind, status = row["kind"], row["status"]
        if kind == Kind.DECISION and status == "send" or kind == Kind.DELIVERY and status == DeliveryStatus.CLAIMED:
            continue
        escalated = kind == Kind.INVOICE and status == InvoiceStatus.ESCALATED
        if kind not in (Kind.DECISION, Kind.DELIVERY, Kind.ESCALATION) and not escalated:
            continue
        detail = row["detail"] or {}
        what = f"{status} → {detail['until'][:16]}" if status == "defer" else status
        if escalated:
            what = "escalation opened"
        elif kind == Kind.ESCALATION:
            what = f"supervisor {status}"
        note = row["template"] or ""
        if kind == Kind.DECISION:
            note = "; ".join(detail.get("reasons", []))
        if row["error_code"]:
            note = f"{row['error_code']} {row['error_text'] or ''}".strip()
        style = {"sent": "green", "failed": "red", "unknown": "red", "skip": "dim", "escalate": "magenta",
                 "defer": "yellow"}.get(status, "")
        table.add_row(row["occurred_at"].strftime("%m-%d %H:%M"), row["job_id"] or "", f"[{style}]{what}[/]"
                      if style else what, row["channel"] or "", mask("address", row["recipient"] or ""), note)
    return table


def _where(console: Console, directory: Path, stack: Stack) -> None:
    emails = sorted((directory / "mail").glob("*.eml"))
    texts, calls = stack.sandbox.sent("Messages"), stack.sandbox.sent("Calls")
    console.print(f"emails: {len(emails)} in {directory / 'mail'}  (open any .eml in a mail client)")
    console.print(f"texts:  {len(texts)} and calls: {len(calls)} in {directory / 'twilio'}  (Twilio sandbox outbox)")
    console.print(f"contact log: {directory / 'dunning.db'}, personal data sealed under {directory / 'master.key'}")
    console.print("\nTo look at it — in a shell:", markup=False)
    console.print(f"  export DUNNING_DATABASE_URL=sqlite:///{directory / 'dunning.db'} "
                  f"DUNNING_MASTER_KEY=$(cat {directory / 'master.key'}) "
                  f"DUNNING_SECRET_KEY=$(cat {directory / 'secret.key'})", markup=False, soft_wrap=True)
    console.print("  .venv/bin/dunning log show", markup=False)
    console.print("and in a browser, as a compliance officer (then http://127.0.0.1:8000/console/, Ctrl-C to stop):",
                  markup=False)
    console.print("  .venv/bin/dunning users add demo --role compliance --password-stdin   "
                  "# type a password, Enter, Ctrl-D", markup=False, soft_wrap=True)
    console.print("  .venv/bin/dunning serve", markup=False)
