"""Commands on local stand-ins (`worker.local`): `demo` and `simulate`; nothing reaches a real provider."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from worker.cli.app import app
from worker.cli.common import InputFile, Unmasked, err, out, parse_now, print_result, profiles_or_exit, read_input
from worker.settings import Settings


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
    progress: Annotated[bool, typer.Option(help="Say each simulated day as it is reached, on stderr "
                                                "('progress: 3/30').")] = False,
) -> None:
    """Preview what the cadences would do, day by day: sends (debtor, channel, local time,
    stage), deferrals, skips, escalations and payments, and why. Real policy code, a
    simulated clock, sandbox channels only: nothing reaches a real provider."""
    import csv

    from rich.table import Table

    from worker.jobs.parse import read_jobs
    from worker.local.simulate import FIELDS
    from worker.local.simulate import simulate as run

    begins = parse_now(start + "T00:00:00+00:00" if len(start) == 10 else start)
    def tell(day: int, of: int) -> None:
        err.print(f"progress: {day}/{of}", markup=False)
        err.file.flush()

    report = run(read_jobs(read_input(source), profiles_or_exit()), begins, days, Settings.from_env(),
                 pay_rate, seed, unmasked, tell if progress else None)
    for rejected in report.rejected:
        print_result(rejected, to=err)
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

    run(parse_now(now), out)

