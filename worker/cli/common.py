"""What every command shares: the consoles, argument types, reading input, the
settings of long-running commands, and printing a job's errors."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from schedules import Facts, ProfileError, Profiles
from worker import policy
from worker.jobs.parse import Parsed, describe
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.contact_log import ContactLog

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

InputFile = Annotated[str, typer.Argument(help="A JSON file (one job or an array) or JSON Lines; '-' reads stdin.")]
By = Annotated[str | None, typer.Option("--by", help="Who reports this (kept in the log); default cli:<user>.")]
Unmasked = Annotated[bool, typer.Option("--unmasked", help="Show phone numbers and emails in full.")]


def long_running() -> Settings:
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


def open_log() -> ContactLog:
    """The contact log to read; `SchemaError` (exit 2, `worker.cli.main`) if not migrated."""
    from worker import wiring

    return wiring.log(Settings.from_env())


def profiles_or_exit() -> Profiles:
    try:
        return policy.profiles()
    except ProfileError as error:
        err.print("the policy profiles have problems (run `dunning profiles check`):", markup=False)
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None


def read_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as error:
        err.print(f"{source}: cannot read ({error.strerror})", markup=False)
        raise typer.Exit(1) from None


def parse_now(value: str | None) -> datetime:
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


def read_facts(path: Path) -> Facts:
    try:
        return Facts.model_validate_json(path.read_bytes())
    except OSError as error:
        err.print(f"--facts: {path}: cannot read ({error.strerror})", markup=False)
    except ValidationError as error:
        for item in error.errors():
            err.print(f"--facts: {path}: {describe(item)}", markup=False)
    raise typer.Exit(1)


def print_result(result: Parsed, to: Console = out) -> None:
    label = f"{result.where}  {result.job_id or '(no job_id)'}"
    if result.ok:
        to.print(f"{label}  ok", markup=False)
        return
    to.print(f"{label}  {len(result.errors)} error(s)", markup=False)
    for error in result.errors:
        to.print(f"    {error}", markup=False)

