"""`dunning profiles check|list`: the policy profiles (TOML)."""

from __future__ import annotations

import typer

from worker.cli.app import profiles_app
from worker.cli.common import err, out, profiles_or_exit
from worker.settings import Settings


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
    for name, profile in profiles_or_exit().items():
        caps = sorted({c.id for c in profile.caps} | {c.id for c in profile.cooldowns})
        table.add_row(name, profile.description, ", ".join(w.id for w in profile.windows), ", ".join(caps),
                      "honoured" if profile.honour_cease else "-",
                      "always" if profile.phone_zones_always else "without timezone")
    out.print(table)

