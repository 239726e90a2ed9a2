"""What every command shares: the consoles, argument types, reading input, the
settings of long-running commands, and printing a job's errors.

Imports of the application stay inside the functions that use them, here and in every
command module: `dunning --help` and `dunning validate` load only what they need
(`bench/cli.py` times them; `tests/test_cli.py` checks what `--help` loads)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from schedules import Facts, Profiles
    from worker.contact_log import ContactLog
    from worker.jobs.parse import Parsed
    from worker.settings import Settings
    from worker.wiring import Books

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

InputFile = Annotated[str, typer.Argument(help="A JSON file (one job or an array) or JSON Lines; '-' reads stdin.")]
By = Annotated[str | None, typer.Option("--by", help="Who reports this (kept in the log); default cli:<user>.")]
Unmasked = Annotated[bool, typer.Option("--unmasked", help="Show phone numbers and emails in full.")]


def long_running() -> Settings:
    """Settings for `serve` and `worker`, which refuse to start on a missing or weak
    signing key (exit 2, saying what to set), and warn of a public URL that is not https.
    Their own log lines (`dunning.*`, INFO and up) go to stderr."""
    import logging

    from worker.errors import ConfigError
    from worker.settings import Settings, require_secrets

    settings = Settings.from_env()
    try:
        warnings = require_secrets(settings)
    except ConfigError as error:
        err.print(f"not starting: {error}", markup=False)
        raise typer.Exit(2) from None
    for warning in warnings:
        err.print(f"warning: {warning}", markup=False)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [PID %(process)d] [%(threadName)s] "
                                                   "[%(name)s] [%(levelname)s] %(message)s")
    return settings


def open_log() -> ContactLog:
    """The contact log to read; `SchemaError` (exit 2, `worker.cli.main`) if not migrated."""
    from worker import wiring
    from worker.settings import Settings

    return wiring.log(Settings.from_env())


def open_books() -> Books:
    """The domains' books over the contact log to read (`open_log`), as `wiring` builds them."""
    from worker import wiring

    return wiring.books(open_log())


def profiles_or_exit() -> Profiles:
    from schedules import ProfileError
    from worker import policy
    from worker.settings import Settings

    try:
        return policy.profiles(Settings.from_env().profile_dir)
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
    from pydantic import ValidationError

    from schedules import Facts
    from worker.jobs.parse import describe

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



@dataclass(frozen=True)
class Column:
    """A column of a table the CLI prints: ids are never cut or folded; `keep` orders who
    stays when the terminal is narrow (the lowest goes first); text wraps."""

    name: str
    keep: int  # 0: never dropped
    is_id: bool = False


def print_fitted(columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
    """A table that fits the terminal: ids whole on one line, the least useful columns left
    out (and named beneath) while even their narrowest would not fit, text wrapped."""
    from rich.table import Table

    width = out.width
    shown = list(range(len(columns)))

    def narrowest(i: int) -> int:
        longest = max([len(columns[i].name), *(len(row[i]) for row in rows)])
        return longest if columns[i].is_id else min(longest, 10)

    while sum(narrowest(i) for i in shown) + 3 * len(shown) + 1 > width:
        droppable = [i for i in shown if columns[i].keep > 0]
        if not droppable:
            break
        shown.remove(min(droppable, key=lambda i: columns[i].keep))
    left_out = [c.name for i, c in enumerate(columns) if i not in shown]
    table = Table(title=title)
    for i in shown:
        column = columns[i]
        table.add_column(column.name, no_wrap=column.is_id, min_width=narrowest(i) if column.is_id else None,
                         overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    out.print(table)
    if left_out:
        out.print(f"left out for the terminal's width: {', '.join(left_out)} (a wider terminal, or "
                  "`dunning log export`, shows them)", markup=False, soft_wrap=False)
