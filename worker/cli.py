"""The `dunning` command line. The one place (with the actors) that reads the wall clock.

Every command exits 0 on success, 1 when the input it was given is wrong (and says
which record, which field, what was expected), 2 on a usage error.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from schedules import Facts, ProfileError, Profiles
from schedules.facts import NOTHING_KNOWN
from worker import policy
from worker.intake import Parsed, describe, read_jobs

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="dunning: payment reminders by email, SMS and voice, within the rules.")
profiles_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Policy profiles (TOML).")
app.add_typer(profiles_app, name="profiles")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

InputFile = Annotated[str, typer.Argument(help="A JSON file (one job or an array) or JSON Lines; '-' reads stdin.")]


def main() -> None:
    app()


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
def demo(
    now: Annotated[str, typer.Option(help="The demo's fixed clock.")] = "2026-12-02T10:00:00+08:00",
) -> None:
    """Decide the bundled sample portfolio at a fixed moment and show the decisions."""
    from worker.demo import run

    run(_parse_now(now), out)


@profiles_app.command("check")
def profiles_check() -> None:
    """Validate every profile (shipped and DUNNING_PROFILE_DIR); exit 1 on any problem."""
    from schedules.profiles import check

    names, problems = check(policy.profile_dir())
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
