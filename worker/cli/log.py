"""`dunning log show|export|verify` and `dunning escalations`: reading the contact log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from worker.cli.app import app, log_app
from worker.cli.common import Column, Unmasked, err, open_log, out, parse_now, print_fitted


@log_app.command("show")
def log_show(
    account: Annotated[str | None, typer.Option(help="Only this debtor account.")] = None,
    invoice: Annotated[str | None, typer.Option(help="Only this invoice.")] = None,
    since: Annotated[str | None, typer.Option(help="Only events at or after this ISO time.")] = None,
    unmasked: Unmasked = False,
) -> None:
    """The contact log as a table: every decision, delivery and status, oldest first. Ids
    are shown whole; on a narrow terminal the least useful columns are left out (said in
    the caption) and the rest wrap."""
    from worker.contact_log import for_export

    rows = []
    for row in open_log().history(account, invoice, parse_now(since) if since else None):
        item = for_export(row, unmasked)
        detail = "; ".join(filter(None, [item["error_code"] and f"{item['error_code']} {item['error_text'] or ''}",
                                         item["provider_message_id"],
                                         ", ".join((item["detail"] or {}).get("reasons", []))]))
        rows.append([item["occurred_at"][:19], item["invoice_id"] or "", item["kind"], item["status"],
                     item["channel"] or "", item["recipient"] or "", item["template"] or "", detail])
    print_fitted(_SHOWN, rows)


_SHOWN = (Column("time (UTC)", 0, is_id=True), Column("invoice", 0, is_id=True), Column("kind", 4),
          Column("status", 0), Column("channel", 2), Column("recipient", 3), Column("template", 1),
          Column("detail", 5))


@log_app.command("export")
def log_export(
    format: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="Write to this file (default: stdout).")] = None,
    unmasked: Unmasked = False,
) -> None:
    """Every event with its delivery, as JSON Lines or CSV; personal data masked unless --unmasked."""
    from worker.contact_log import for_export, to_json_line, write_csv

    if format not in ("jsonl", "csv"):
        err.print(f"--format: {format!r} is not one of jsonl, csv", markup=False)
        raise typer.Exit(2)
    stream = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        items = (for_export(row, unmasked) for row in open_log().history())
        if format == "csv":
            write_csv(items, stream)
        else:
            for item in items:
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
    verdict = open_log().verify(head)
    for problem in verdict.problems:
        err.print(problem, markup=False)
    if not verdict.intact:
        err.print(f"{len(verdict.problems)} problem(s) in {verdict.events} events", markup=False)
        raise typer.Exit(1)
    out.print(f"intact: {verdict.events} events; head {verdict.head} (keep it: `--head` checks against it later)",
              markup=False)


@log_app.command("template")
def log_template(
    version: Annotated[str, typer.Argument(help="A template version (the SHA-256 in a delivery's "
                                                "template_version, as `log show` and `log export` list it).")],
) -> None:
    """Print the template source a delivery was rendered from, as it was kept when first
    used: with the job, any message sent can be reproduced exactly."""
    source = open_log().template_source(version.strip().lower())
    if source is None:
        err.print(f"{version}: no template version with this hash is kept in the contact log", markup=False)
        raise typer.Exit(1)
    out.print(source, markup=False, end="" if source.endswith("\n") else "\n")

@app.command()
def escalations() -> None:
    """Open escalations: invoices handed to a person (not paid, written off or closed in the
    console since), oldest first, with who took each."""
    found = open_log().escalations()
    rows = [[row["occurred_at"].isoformat()[:16], row["invoice_id"] or "", row["account_id"] or "", row["job_id"] or "",
             "; ".join((row["detail"] or {}).get("reasons", [])), row["assigned_to"] or ""] for row in found]
    print_fitted((Column("since (UTC)", 0, is_id=True), Column("invoice", 0, is_id=True),
                  Column("account", 3, is_id=True), Column("job", 2, is_id=True), Column("why", 0),
                  Column("taken by", 1)), rows, title=f"{len(found)} open escalation(s)")

