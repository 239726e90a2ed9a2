"""The `dunning` command line. The one place (with the actors) that reads the wall clock.

Every command exits 0 on success, 1 when the input it was given is wrong (and says
which record, which field, what was expected), 2 on a usage or configuration error,
3 when a service it needs (Redis, the database) is unavailable: try again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from schedules import Facts, ProfileError, Profiles
from schedules.facts import NOTHING_KNOWN
from worker import policy
from worker.jobs.parse import Parsed, describe, read_jobs
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.contact_log import ContactLog
    from worker.events import Applied, Events

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="dunning: payment reminders by email, SMS and voice, within the rules.")
profiles_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Policy profiles (TOML).")
app.add_typer(profiles_app, name="profiles")
templates_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Message templates (Jinja2).")
app.add_typer(templates_app, name="templates")
log_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="The contact log.")
app.add_typer(log_app, name="log")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

InputFile = Annotated[str, typer.Argument(help="A JSON file (one job or an array) or JSON Lines; '-' reads stdin.")]


def main() -> None:
    from worker.settings import ConfigError

    try:
        app()
    except ConfigError as error:  # a bad setting: name it, no traceback
        err.print(f"configuration: {error}", markup=False)
        sys.exit(2)


@app.command()
def validate(
    source: InputFile,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON result per line instead of text.")] = False,
) -> None:
    """Check jobs against the job contract (version 1); exit 1 if any is invalid."""
    results = list(read_jobs(_read(source), _profiles()))
    for result in results:
        if as_json:
            out.print(json.dumps({"where": result.where, "job_id": result.job_id, "ok": result.ok,
                                  "errors": result.errors}, ensure_ascii=False), markup=False)
        else:
            _print_result(result)
    invalid = sum(not r.ok for r in results)
    if not as_json:
        err.print(f"{len(results)} job(s): {len(results) - invalid} valid, {invalid} invalid")
    raise typer.Exit(1 if invalid or not results else 0)


@app.command()
def decide(
    source: InputFile,
    now: Annotated[str | None, typer.Option(help="The moment to decide for, ISO 8601 with offset "
                                                    "(default: the current time).")] = None,
    facts: Annotated[Path | None, typer.Option(help="What is known of the debtor (JSON): paid, disputed, "
                                                       "promised_until, attempts, suppressions.")] = None,
) -> None:
    """Decide whether, when and how to contact each job's debtor, and why (JSON, one per job)."""
    moment = _parse_now(now)
    known = _read_facts(facts) if facts else NOTHING_KNOWN
    results = list(read_jobs(_read(source), _profiles()))
    if any(not r.ok for r in results) or not results:
        for result in results:
            if not result.ok:
                _print_result(result, to=err)
        if not results:
            err.print("no job found in the input")
        raise typer.Exit(1)
    for result in results:
        assert result.job is not None
        decision = policy.decide(result.job, moment, known).to_json()
        if len(results) > 1:
            decision = {"job_id": result.job.job_id, **decision}
        out.print(json.dumps(decision, ensure_ascii=False), markup=False)


@app.command()
def enqueue(source: InputFile) -> None:
    """Queue jobs for the worker; invalid ones are reported and kept as dead letters (exit 1).
    A job with "cadence" registers its invoice (see `dunning register`)."""
    _submit(source, register=False)


@app.command()
def register(source: InputFile) -> None:
    """Register invoices: the worker plans every step of the profile's ladder (job ids
    INVOICE/stage/n) until paid, written off, disputed or escalated. Same input as `enqueue`, without "stage"."""
    _submit(source, register=True)


def _submit(source: str, register: bool) -> None:
    from worker.contact_log import ContactLog
    from worker.jobs.intake import OUTAGES, Intake, as_registration, submit
    from worker.queue.broker import make_broker

    settings = Settings.from_env()
    known = _profiles()
    parsed = list(read_jobs(_read(source), known))
    if register:
        parsed = [as_registration(item, known) for item in parsed]
    broker = make_broker(settings.redis_url)
    try:
        result = submit(parsed, ContactLog.open(settings.database_url), broker, datetime.now(UTC))
    except OUTAGES as error:  # the log could not even be opened
        result = Intake(unavailable=[p.job_id or p.where for p in parsed],
                        reason=f"the contact log is unavailable ({type(error).__name__})")
    finally:
        broker.close()
    for rejected in result.rejected:
        _print_result(rejected, to=err)
    for job_id in result.duplicates:
        err.print(f"{job_id}: already accepted; not queued again", markup=False)
    registered = f"{result.registered} cadence step(s) planned, " if result.registered or register else ""
    summary = (f"{result.accepted} queued, {registered}{len(result.duplicates)} duplicate(s), "
               f"{len(result.rejected)} rejected (kept as dead letters)")
    if result.unavailable:
        out.print(f"{summary}, {len(result.unavailable)} not accepted", markup=False)
        err.print(f"{result.reason}: {len(result.unavailable)} job(s) were not accepted; send the same input again "
                  "(what was accepted comes back as duplicates)", markup=False)
        raise typer.Exit(3)
    out.print(summary, markup=False)
    raise typer.Exit(1 if result.rejected else 0)


By = Annotated[str | None, typer.Option("--by", help="Who reports this (kept in the log); default cli:<user>.")]


@app.command()
def paid(
    invoice: Annotated[str, typer.Argument(help="The invoice id (invoice.id in the jobs).")],
    amount: Annotated[str | None, typer.Option(help="A partial payment: the amount paid (e.g. 1200.00).")] = None,
    by: By = None,
) -> None:
    """The invoice was paid: pending reminders are cancelled, nothing more is sent for it."""
    _event(lambda events, now, who: events.paid(invoice, now, by=who, amount=amount), by)


@app.command("writeoff")
def write_off(
    invoice: Annotated[str, typer.Argument(help="The invoice id.")],
    note: Annotated[str | None, typer.Option(help="Why it was written off (kept in the log).")] = None,
    by: By = None,
) -> None:
    """The invoice was written off: its cadence ends and its escalation, if any, closes."""
    _event(lambda events, now, who: events.write_off(invoice, now, by=who, note=note), by)


@app.command()
def dispute(
    invoice: Annotated[str, typer.Argument(help="The invoice id.")],
    resolved: Annotated[bool, typer.Option("--resolved", help="The dispute is resolved: reminders resume.")] = False,
    note: Annotated[str | None, typer.Option(help="What the dispute is about (kept in the log).")] = None,
    by: By = None,
) -> None:
    """The debtor disputes the invoice: reminders pause until `--resolved`."""
    _event(lambda events, now, who: events.dispute(invoice, now, by=who, resolved=resolved, note=note), by)


@app.command()
def promise(
    invoice: Annotated[str, typer.Argument(help="The invoice id.")],
    until: Annotated[str, typer.Option("--until", help="The promised payment date, YYYY-MM-DD.")],
    by: By = None,
) -> None:
    """The debtor promised to pay by a date: reminders pause until the day after."""
    from datetime import date

    try:
        day = date.fromisoformat(until)
    except ValueError:
        err.print(f"--until: {until!r}; a date YYYY-MM-DD expected", markup=False)
        raise typer.Exit(1) from None
    _event(lambda events, now, who: events.promise(invoice, day, now, by=who), by)


@app.command()
def optout(
    address: Annotated[str | None, typer.Argument(help="An email address or an E.164 phone number.")] = None,
    account: Annotated[str | None, typer.Option(help="With --channel: the account that asked.")] = None,
    channel: Annotated[str | None, typer.Option(help="With --account: email, sms or voice.")] = None,
    by: By = None,
) -> None:
    """Stop messages to an address, or to an account through one channel (--account A --channel C)."""
    if address is not None and channel is None:
        _event(lambda events, now, who: events.optout(address, now, by=who, account_id=account), by)
    elif address is None and account and channel:
        _event(lambda events, now, who: events.optout_channel(account, channel, now, by=who), by)
    else:
        err.print("give an ADDRESS, or --account A --channel C", markup=False)
        raise typer.Exit(2)


@app.command()
def cease(
    account: Annotated[str, typer.Argument(help="The account id (debtor.account_id).")],
    note: Annotated[str | None, typer.Option(help="The request, e.g. 'letter of 2026-11-20'.")] = None,
    by: By = None,
) -> None:
    """A cease-communication request (or attorney representation): collection messages stop."""
    _event(lambda events, now, who: events.cease(account, now, by=who, note=note), by)


def _event(act: Callable[[Events, datetime, str], Applied], by: str | None) -> None:
    """Record one event with the wall clock and say what it did; a bad field exits 1."""
    import getpass

    from worker.contact_log import ContactLog
    from worker.events import EventError, Events
    from worker.queue.agenda import Agenda
    from worker.queue.broker import redis_client

    settings = Settings.from_env()
    log = ContactLog.open(settings.database_url)
    client = redis_client(settings.redis_url)
    try:
        applied = act(Events(log, Agenda(client)), datetime.now(UTC), by or f"cli:{getpass.getuser()}")
    except EventError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None
    finally:
        client.close()
        log.engine.dispose()
    out.print(applied.summary + (f" ({applied.agenda})" if applied.agenda else ""), markup=False)


@app.command()
def worker(
    processes: Annotated[int, typer.Option(help="Worker processes (one per core).")] = 2,
    threads: Annotated[int, typer.Option(help="Threads per process.")] = 8,
    check: Annotated[bool, typer.Option("--check", help="Do not run: say whether the worker running here is "
                                                        "healthy (exit 0) or not (exit 1, saying why).")] = False,
) -> None:
    """Run the worker: dramatiq processes for the queue, and the agenda's dispatcher,
    the intake reconciler and the stranded-message recovery, each kept alive."""
    import logging
    import signal
    import subprocess
    import threading
    import time
    from datetime import timedelta

    from worker.clock import from_settings
    from worker.contact_log import ContactLog
    from worker.queue import dispatcher
    from worker.queue.agenda import Agenda
    from worker.queue.broker import QUEUE, make_broker, redis_client
    from worker.supervisor import Loop, Supervisor
    from worker.supervisor import check as check_health

    if check:
        problems = check_health(Settings.from_env().health_file, time.time())
        for problem in problems:
            err.print(problem, markup=False)
        if not problems:
            out.print("healthy", markup=False)
        raise typer.Exit(1 if problems else 0)
    settings = _long_running()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [PID %(process)d] [%(threadName)s] "
                                                   "[%(name)s] [%(levelname)s] %(message)s")
    try:
        log = ContactLog.open(settings.database_url)  # migrate once, before the workers start
    except Exception as error:  # the database away at start: say so; systemd/Kubernetes start us again
        err.print(f"not starting: the contact log is unavailable ({type(error).__name__})", markup=False)
        raise typer.Exit(3) from None
    child = subprocess.Popen([sys.executable, "-m", "dramatiq", "worker.actors", "--processes", str(processes),
                              "--threads", str(threads), "--queues", QUEUE], preexec_fn=_die_with_parent)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    client = redis_client(settings.redis_url)
    clock = from_settings(settings.clock, client)
    broker = make_broker(settings.redis_url)
    agenda = Agenda(client)
    supervisor = Supervisor([
        Loop("dispatcher", dispatcher.dispatcher(agenda, broker, clock)),
        Loop("reconciler", dispatcher.reconciler(log, broker, agenda, clock)),
        Loop("stranded", dispatcher.stranded(broker, timedelta(seconds=settings.stranded_after_s))),
    ], stop, time.time, settings.health_file)
    supervisor.start()
    code = supervisor.watch(lambda: child.poll() is None)
    stop.set()
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    child_code = child.wait()
    settings.health_file.unlink(missing_ok=True)
    raise typer.Exit(code or (child_code if child_code and child_code > 0 else 0))


def _die_with_parent() -> None:
    """In the dramatiq child: be sent SIGTERM if `dunning worker` dies (even by SIGKILL),
    so no worker process runs on orphaned, without its dispatcher (Linux)."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve Twilio status callbacks (/twilio/status), SMS replies (/twilio/inbound) and
    one-click unsubscribes (/u/TOKEN). Twilio signs for DUNNING_PUBLIC_URL: set it to the
    URL the outside world uses."""
    import uvicorn

    from worker.clock import RedisClock
    from worker.contact_log import ContactLog
    from worker.http.app import create_app
    from worker.queue.broker import redis_client

    settings = _long_running()
    if not settings.twilio_auth_token:
        err.print("DUNNING_TWILIO_AUTH_TOKEN is not set: every Twilio request will be refused (403)", markup=False)
    now = (lambda: datetime.now(UTC)) if settings.clock == "system" else (
        RedisClock(redis_client(settings.redis_url)).now)
    app_ = create_app(ContactLog.open(settings.database_url), settings, now)
    uvicorn.run(app_, host=host, port=port, log_level="info", proxy_headers=True)


@app.command()
def simulate(
    source: InputFile,
    start: Annotated[str, typer.Option(help="When the simulation starts (ISO date or time; a date is 00:00 UTC).")],
    days: Annotated[int, typer.Option(min=1, max=366, help="How many days to simulate.")] = 30,
    pay_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Chance each open invoice is paid on a "
                                                                    "given day.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed for the payments (same seed, same run).")] = 0,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Also write every row to this CSV file.")] = None,
    unmasked: Unmasked = False,
) -> None:
    """Preview what the cadences would do, day by day: sends (debtor, channel, local time,
    stage), deferrals, skips, escalations and payments, and why. Real policy code, a
    simulated clock, sandbox channels only: nothing reaches a real provider."""
    import csv

    from rich.table import Table

    from worker.local.simulate import FIELDS
    from worker.local.simulate import simulate as run

    begins = _parse_now(start + "T00:00:00+00:00" if len(start) == 10 else start)
    report = run(read_jobs(_read(source), _profiles()), begins, days, Settings.from_env(),
                 pay_rate, seed, unmasked)
    for rejected in report.rejected:
        _print_result(rejected, to=err)
    table = Table("local time", "invoice", "debtor", "profile", "action", "channel", "stage", "why",
                  title=f"{days} days from {start}")
    style = {"sent": "green", "failed": "red", "unknown": "red", "defer": "yellow", "skip": "dim",
             "escalated": "magenta", "paid": "cyan"}
    day = None
    for row in report.rows:
        if row.utc.date() != day:
            day = row.utc.date()
            table.add_section()
        table.add_row(row.local.strftime("%a %m-%d %H:%M %Z"), row.invoice, row.debtor, row.profile,
                      f"[{style.get(row.action, '')}]{row.action}[/]", row.channel, row.stage, row.detail)
    out.print(table)
    counts = {action: sum(1 for r in report.rows if r.action == action) for action in style}
    out.print(", ".join(f"{n} {action}" for action, n in counts.items() if n), markup=False)
    if csv_file:
        with csv_file.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(row.as_dict() for row in report.rows)
    raise typer.Exit(1 if report.rejected else 0)


@app.command()
def demo(
    now: Annotated[str, typer.Option(help="Where the demo's clock starts.")] = "2026-12-02T10:00:00+08:00",
) -> None:
    """Run the whole pipeline on the bundled samples: local Redis, SMTP and Twilio sandbox, a simulated clock."""
    from worker.local.demo import run

    run(_parse_now(now), out)


@profiles_app.command("check")
def profiles_check() -> None:
    """Validate every profile (shipped and DUNNING_PROFILE_DIR); exit 1 on any problem."""
    from schedules.loader import check

    names, problems = check(Settings.from_env().profile_dir)
    for problem in problems:
        err.print(str(problem), markup=False)
    out.print(f"{len(names)} profile(s) resolve: {', '.join(names)}" if names else "no profile resolves")
    raise typer.Exit(1 if problems else 0)


@profiles_app.command("list")
def profiles_list() -> None:
    """Show each profile with its windows, caps and what it extends."""
    from rich.table import Table

    table = Table("profile", "description", "windows", "caps", "cease", "phone zones")
    for name, profile in _profiles().items():
        caps = sorted({c.id for c in profile.caps} | {c.id for c in profile.cooldowns})
        table.add_row(name, profile.description, ", ".join(w.id for w in profile.windows), ", ".join(caps),
                      "honoured" if profile.honour_cease else "-",
                      "always" if profile.phone_zones_always else "without timezone")
    out.print(table)


@templates_app.command("check")
def templates_check() -> None:
    """Render every template with the sample jobs; exit 1 on errors (warnings do not fail)."""
    from worker.local.demo import sample_jobs
    from worker.messages.checks import check_templates
    from worker.messages.render import Renderer

    settings = Settings.from_env()
    renderer = Renderer(settings.template_dir, settings.default_locale)
    stages = [s.name for s in _profiles()["default"].ladder.stages if s.action == "send"]
    findings = check_templates(renderer, stages, sample_jobs(), settings.sender)
    for finding in findings:
        (err if finding.level == "error" else out).print(str(finding), markup=False)
    errors = sum(f.level == "error" for f in findings)
    out.print(f"{len(renderer.env.list_templates(extensions=['j2']))} template(s) in {settings.template_dir}: "
              f"{errors} error(s), {len(findings) - errors} warning(s)")
    raise typer.Exit(1 if errors else 0)


@templates_app.command("preview")
def templates_preview(
    name: Annotated[str, typer.Argument(help="The template (a stage name, e.g. due_day).")],
    job: Annotated[Path, typer.Option(help="A job file (JSON) to fill the template with.")],
    channel: Annotated[str, typer.Option(help="email, sms or voice.")] = "email",
    locale: Annotated[str | None, typer.Option(help="Override the debtor's locale.")] = None,
    now: Annotated[str | None, typer.Option(help="The moment (for days past due); default now.")] = None,
) -> None:
    """Print a message as it would be sent."""
    from channels.segments import count_segments
    from schedules.zones import candidate_zones
    from worker.messages import unsubscribe
    from worker.messages.render import CHANNELS, Renderer, TemplateError, compose

    if channel not in CHANNELS:
        err.print(f"--channel: {channel!r} is not one of {', '.join(CHANNELS)}", markup=False)
        raise typer.Exit(2)
    results = list(read_jobs(_read(str(job)), _profiles()))
    if len(results) != 1 or results[0].job is None:
        for result in results:
            _print_result(result, to=err)
        err.print("--job: one valid job expected", markup=False)
        raise typer.Exit(1)
    the_job = results[0].job
    settings = Settings.from_env()
    renderer = Renderer(settings.template_dir, settings.default_locale)
    debtor = the_job.debtor
    zones = candidate_zones(debtor.timezone, debtor.phone, debtor.country, False)
    today = _parse_now(now).astimezone(zones[0]).date() if zones else _parse_now(now).date()
    address = debtor.email if channel == "email" else debtor.phone
    # A link as long as the worker's (signed the same way), so the preview is the message sent.
    link = unsubscribe.url(settings.public_url, settings.secret_key or "preview", debtor.account_id, channel,
                           address or "") if channel == "email" else None
    try:
        message = compose(renderer, the_job, name, channel, today, settings.sender, link, locale=locale)
    except TemplateError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None
    out.print(f"template: {message.template} (version {message.version[:12]})", markup=False)
    if message.subject is not None:
        out.print(f"subject: {message.subject}", markup=False)
    if channel == "sms":
        segments = count_segments(message.text)
        out.print(f"segments: {segments.parts} ({segments.encoding}, {segments.units} units)", markup=False)
    out.print("", markup=False)
    out.print(message.text, markup=False)
    if message.html is not None:
        out.print(f"\n--- HTML ({message.templates[1].name}) ---\n{message.html}", markup=False)


Unmasked = Annotated[bool, typer.Option("--unmasked", help="Show phone numbers and emails in full.")]


@log_app.command("show")
def log_show(
    account: Annotated[str | None, typer.Option(help="Only this debtor account.")] = None,
    invoice: Annotated[str | None, typer.Option(help="Only this invoice.")] = None,
    since: Annotated[str | None, typer.Option(help="Only events at or after this ISO time.")] = None,
    unmasked: Unmasked = False,
) -> None:
    """The contact log as a table: every decision, delivery and status, oldest first."""
    from rich.table import Table

    from worker.contact_log import for_export

    table = Table("time (UTC)", "invoice", "kind", "status", "channel", "recipient", "template", "detail")
    for row in _log().history(account, invoice, _parse_now(since) if since else None):
        item = for_export(row, unmasked)
        detail = "; ".join(filter(None, [item["error_code"] and f"{item['error_code']} {item['error_text'] or ''}",
                                         item["provider_message_id"],
                                         ", ".join((item["detail"] or {}).get("reasons", []))]))
        table.add_row(item["occurred_at"][:19], item["invoice_id"] or "", item["kind"], item["status"],
                      item["channel"] or "", item["recipient"] or "", item["template"] or "", detail)
    out.print(table)


@log_app.command("export")
def log_export(
    format: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="Write to this file (default: stdout).")] = None,
    unmasked: Unmasked = False,
) -> None:
    """Every event with its delivery, as JSON Lines or CSV; personal data masked unless --unmasked."""
    import csv

    from worker.contact_log import EXPORT_FIELDS, for_export, to_json_line

    if format not in ("jsonl", "csv"):
        err.print(f"--format: {format!r} is not one of jsonl, csv", markup=False)
        raise typer.Exit(2)
    stream = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        writer = csv.DictWriter(stream, fieldnames=EXPORT_FIELDS) if format == "csv" else None
        if writer:
            writer.writeheader()
        for row in _log().history():
            item = for_export(row, unmasked)
            if writer:
                writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                                 for k, v in item.items()})
            else:
                stream.write(to_json_line(item) + "\n")
    finally:
        if output:
            stream.close()


@log_app.command("verify")
def log_verify(
    head: Annotated[str | None, typer.Option(help="An anchor ID:DIGEST printed by an earlier verify: check that "
                                                  "the log still passes through it (nothing cut off its end).")] = None,
) -> None:
    """Recompute the contact log's hash chain: exit 0 if no event or delivery was altered or removed."""
    if head is not None and (len(head.partition(":")[2]) != 64 or not head.partition(":")[0].isdigit()):
        err.print(f"--head: {head!r}; ID:DIGEST expected, as verify prints it (1234:9f86d08...)", markup=False)
        raise typer.Exit(2)
    verdict = _log().verify(head)
    for problem in verdict.problems:
        err.print(problem, markup=False)
    if not verdict.intact:
        err.print(f"{len(verdict.problems)} problem(s) in {verdict.events} events", markup=False)
        raise typer.Exit(1)
    out.print(f"intact: {verdict.events} events; head {verdict.head} (keep it: `--head` checks against it later)",
              markup=False)


@app.command()
def escalations() -> None:
    """Open escalations: invoices handed to a person (and not paid since), oldest first."""
    from rich.table import Table

    found = _log().escalations()
    table = Table("since (UTC)", "invoice", "account", "job", "why", title=f"{len(found)} open escalation(s)")
    for row in found:
        table.add_row(row["occurred_at"].isoformat()[:16], row["invoice_id"] or "", row["account_id"] or "",
                      row["job_id"] or "",
                      "; ".join((row["detail"] or {}).get("reasons", [])))
    out.print(table)


def _long_running() -> Settings:
    """Settings for `serve` and `worker`, which refuse to start on a missing or weak
    signing key (exit 2, saying what to set), and warn of a public URL that is not https."""
    from worker.settings import ConfigError, require_secrets

    settings = Settings.from_env()
    try:
        warnings = require_secrets(settings)
    except ConfigError as error:
        err.print(f"not starting: {error}", markup=False)
        raise typer.Exit(2) from None
    for warning in warnings:
        err.print(f"warning: {warning}", markup=False)
    return settings


def _log() -> ContactLog:
    from worker.contact_log import ContactLog

    return ContactLog.open(Settings.from_env().database_url)


def _profiles() -> Profiles:
    try:
        return policy.profiles()
    except ProfileError as error:
        err.print("the policy profiles have problems (run `dunning profiles check`):", markup=False)
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as error:
        err.print(f"{source}: cannot read ({error.strerror})", markup=False)
        raise typer.Exit(1) from None


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        err.print(f"--now: {value!r} is not an ISO 8601 time with an offset "
                  "(e.g. 2026-12-01T09:00:00+08:00 or 2026-12-01T01:00:00Z)", markup=False)
        raise typer.Exit(2)
    return moment


def _read_facts(path: Path) -> Facts:
    try:
        return Facts.model_validate_json(path.read_bytes())
    except OSError as error:
        err.print(f"--facts: {path}: cannot read ({error.strerror})", markup=False)
    except ValidationError as error:
        for item in error.errors():
            err.print(f"--facts: {path}: {describe(item)}", markup=False)
    raise typer.Exit(1)


def _print_result(result: Parsed, to: Console = out) -> None:
    label = f"{result.where}  {result.job_id or '(no job_id)'}"
    if result.ok:
        to.print(f"{label}  ok", markup=False)
        return
    to.print(f"{label}  {len(result.errors)} error(s)", markup=False)
    for error in result.errors:
        to.print(f"    {error}", markup=False)


if __name__ == "__main__":
    main()
