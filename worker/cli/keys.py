"""`dunning keys create|list|revoke`: the billing API's keys. A key is printed once, alone
on the last line of `create`; the log keeps only its hash, and who made or revoked it."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Annotated

import typer

from worker.cli.app import keys_app
from worker.cli.common import By, err, open_books, out


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key, e.g. the billing system it is for.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: jobs:write, events:write, read.")],
    by: By = None,
) -> None:
    """Make a key and print it, once: store it in the billing system's secrets now."""
    from worker.users.keys import KeyProblem, parse_scopes

    try:
        wanted = parse_scopes(scopes)
        key = open_books().keys.create_key(name, wanted, datetime.now(UTC), by or f"cli:{getpass.getuser()}")
    except KeyProblem as problem:
        err.print(str(problem), markup=False)
        raise typer.Exit(1) from None
    err.print(f"key {name!r} ({', '.join(sorted(wanted))}); it is shown this once:", markup=False)
    out.print(key, markup=False)


@keys_app.command("list")
def keys_list() -> None:
    """The keys: names, scopes, when made, last used and revoked; never the keys."""
    from rich.table import Table

    table = Table("name", "key starts", "scopes", "created (UTC)", "last used (UTC)", "revoked (UTC)")
    for key in open_books().keys.api_keys():
        table.add_row(key.name, key.prefix + "…", ", ".join(sorted(key.scopes)), _when(key.created_at),
                      _when(key.last_used_at), _when(key.revoked_at))
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    by: By = None,
) -> None:
    """Revoke a key: every request with it is refused (401) from now on."""
    if not open_books().keys.revoke_key(name, datetime.now(UTC), by or f"cli:{getpass.getuser()}"):
        err.print(f"{name}: no live key has this name (`dunning keys list`)", markup=False)
        raise typer.Exit(1)
    out.print(f"{name}: revoked", markup=False)


def _when(moment: datetime | None) -> str:
    return moment.isoformat()[:16] if moment else "-"
