"""`dunning users add|list|disable|passwd`: the people who sign in to the console, with
their role. Passwords come on standard input (`--password-stdin`, for scripts) or are
asked for twice; only argon2 hashes are kept, and every change is in the contact log."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from worker.cli.app import users_app
from worker.cli.common import By, err, open_books, out

PasswordStdin = Annotated[bool, typer.Option("--password-stdin",
                                             help="Read the password from standard input (its first line).")]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password (at least 12 characters): ")
    if getpass.getpass("Again: ") != first:
        err.print("the two passwords differ", markup=False)
        raise typer.Exit(1)
    return first


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The sign-in name.")],
    role: Annotated[str, typer.Option(help="compliance, operator or admin.")],
    password_stdin: PasswordStdin = False,
    by: By = None,
) -> None:
    """Add a person who can sign in to the console with ROLE."""
    from worker.users.people import PersonProblem

    try:
        person = open_books().people.add_user(name, role, _password(password_stdin), datetime.now(UTC),
                                     by or f"cli:{getpass.getuser()}")
    except PersonProblem as problem:
        err.print(str(problem), markup=False)
        raise typer.Exit(1) from None
    out.print(f"{person.name}: added ({person.role})", markup=False)


@users_app.command("list")
def users_list() -> None:
    """The people: names, roles, when added and disabled; never passwords."""
    from rich.table import Table

    table = Table("name", "role", "added (UTC)", "disabled (UTC)")
    for person in open_books().people.people():
        table.add_row(person.name, person.role, person.created_at.isoformat()[:16],
                      person.disabled_at.isoformat()[:16] if person.disabled_at else "-")
    out.print(table)


@users_app.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="The sign-in name.")], by: By = None) -> None:
    """Disable a person at once: their sessions end, and they cannot sign in."""
    if not open_books().people.disable_user(name, datetime.now(UTC), by or f"cli:{getpass.getuser()}"):
        err.print(f"{name}: no enabled person has this name (`dunning users list`)", markup=False)
        raise typer.Exit(1)
    out.print(f"{name}: disabled", markup=False)


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="The sign-in name.")],
    password_stdin: PasswordStdin = False,
    by: By = None,
) -> None:
    """Give a person a new password; their sessions end."""
    from worker.users.people import PersonProblem

    try:
        done = open_books().people.set_password(name, _password(password_stdin), datetime.now(UTC),
                                       by or f"cli:{getpass.getuser()}")
    except PersonProblem as problem:
        err.print(str(problem), markup=False)
        raise typer.Exit(1) from None
    if not done:
        err.print(f"{name}: no such person (`dunning users list`)", markup=False)
        raise typer.Exit(1)
    out.print(f"{name}: new password set", markup=False)
