"""Jobs in: `validate`, `decide` (explain, send nothing), `enqueue`, `register` (cadences)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from worker.cli.app import app
from worker.cli.common import InputFile, err, out, parse_now, print_result, profiles_or_exit, read_facts, read_input
from worker.settings import Settings


@app.command()
def validate(
    source: InputFile,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON result per line instead of text.")] = False,
) -> None:
    """Check jobs against the job contract (version 1); exit 1 if any is invalid."""
    from worker.jobs.parse import read_jobs

    results = list(read_jobs(read_input(source), profiles_or_exit()))
    for result in results:
        if as_json:
            out.print(json.dumps({"where": result.where, "job_id": result.job_id, "ok": result.ok,
                                  "errors": result.errors}, ensure_ascii=False), markup=False)
        else:
            print_result(result)
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
    from schedules.facts import NOTHING_KNOWN
    from worker import policy
    from worker.jobs.parse import read_jobs

    moment = parse_now(now)
    known, given = profiles_or_exit(), read_facts(facts) if facts else NOTHING_KNOWN
    results = list(read_jobs(read_input(source), known))
    if any(not r.ok for r in results) or not results:
        for result in results:
            if not result.ok:
                print_result(result, to=err)
        if not results:
            err.print("no job found in the input")
        raise typer.Exit(1)
    for result in results:
        assert result.job is not None
        decision = policy.decide(result.job, moment, known, given).to_json()
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
    from worker import wiring
    from worker.jobs.intake import OUTAGES, Intake, as_registration, submit
    from worker.jobs.parse import read_jobs

    settings = Settings.from_env()
    known = profiles_or_exit()
    parsed = list(read_jobs(read_input(source), known))
    if register:
        parsed = [as_registration(item, known) for item in parsed]
    broker = wiring.broker(settings)
    try:
        result = submit(parsed, wiring.books(wiring.log(settings)).jobs, known, broker, datetime.now(UTC))
    except OUTAGES as error:  # the log could not even be opened
        result = Intake(unavailable=[p.job_id or p.where for p in parsed],
                        reason=f"the contact log is unavailable ({type(error).__name__})")
    finally:
        broker.close()
    for rejected in result.rejected:
        print_result(rejected, to=err)
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

