"""`dunning log show|export|verify|keygen|checkpoint|backup` and `dunning escalations`: reading the
contact log, and proving it was not altered."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.app import app, log_app
from worker.cli.common import Column, Unmasked, err, open_log, out, parse_now, print_fitted

if TYPE_CHECKING:
    from worker.contact_log import ContactLog
    from worker.contact_log.chain import Verdict


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
    head: Annotated[str | None, typer.Option(help="An event ID:DIGEST printed by an earlier verify: check that "
                                                  "event is still there, unchanged.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="A signed checkpoint (`dunning log checkpoint`, or one "
                                                         "from DUNNING_CHECKPOINT_DIR): check the log still "
                                                         "passes through every head it saw.")] = None,
    public_key: Annotated[Path | None, typer.Option(help="The checkpoint key's public half (`dunning log keygen` "
                                                         "prints it): the checkpoint must be signed by it.")] = None,
    account: Annotated[str | None, typer.Option(help="Only the chain this account's events are in: fast.")] = None,
) -> None:
    """Recompute the contact log's hash chains: exit 0 if no event or delivery was altered
    or removed (and the log extends the checkpoint given), 1 if one was, 2 on bad input."""
    from worker import wiring
    from worker.contact_log.note import NoteError, Verifier

    if head is not None and (len(head.partition(":")[2]) != 64 or not head.partition(":")[0].isdigit()):
        err.print(f"--head: {head!r}; ID:DIGEST expected, as verify prints it (1234:9f86d08...)", markup=False)
        raise typer.Exit(2)
    if (checkpoint is None) != (public_key is None):
        err.print("--checkpoint and --public-key: both expected (a checkpoint is checked against its signer's key)",
                  markup=False)
        raise typer.Exit(2)
    note, verifier = None, None
    if checkpoint is not None and public_key is not None:
        try:
            note, verifier = checkpoint.read_text(encoding="utf-8"), Verifier.parse(public_key.read_text())
        except (OSError, UnicodeDecodeError, NoteError) as error:
            err.print(f"--checkpoint/--public-key: {error}", markup=False)
            raise typer.Exit(2) from None
    log = open_log()
    verdict = log.verify(head, account=account)
    problems = [*verdict.problems,
                *(wiring.books(log).checkpoints.check(note, verifier, account) if note is not None else [])]
    for problem in problems:
        err.print(problem, markup=False)
    if account is None and head is None:  # the whole log: what /metrics says and the alerts watch
        _record_verdict(log, verdict, problems, note)
    if problems:
        err.print(f"{len(problems)} problem(s) in {verdict.events} events", markup=False)
        raise typer.Exit(1)
    what = f"the chain of account {account}" if account is not None else f"{log.chain_count()} chains"
    out.print(f"intact: {verdict.events} events in {what}; newest event {verdict.head}"
              + ("; the log extends the checkpoint" if note is not None else ""), markup=False)


def _record_verdict(log: ContactLog, verdict: Verdict, problems: list[str], note: str | None) -> None:
    """Keep the whole log's verification in the log, as the console's are kept (an access
    event: who, the result), so `dunning_log_verify_last_*` and the "not verified in a day"
    alert see a scheduled `dunning log verify` too. A log this command may only read (an
    auditor's copy, a read-only role) still verifies: the verdict stands, unrecorded."""
    import getpass
    from datetime import UTC, datetime

    from worker.contact_log.kinds import AccessStatus, Event, Kind
    from worker.contact_log.note import Checkpoint

    try:
        log.record(Event(Kind.ACCESS, AccessStatus.VERIFIED, detail={
            "user": getpass.getuser()[:100], "via": "command line", "intact": not problems, "head": verdict.head,
            "events": verdict.events, "chains": len(verdict.heads), "problems": problems[:50],
            "checkpoint": Checkpoint.in_note(note).at.isoformat() if note else None,
            "more_problems": max(len(problems) - 50, 0)}), datetime.now(UTC))
    except Exception as error:  # noqa: BLE001 (verifying must not depend on being able to write)
        err.print(f"the verification was not recorded in the log ({type(error).__name__})", markup=False)


@log_app.command("keygen")
def log_keygen(
    name: Annotated[str, typer.Option(help="The log's name, as checkpoints will carry it (your domain and a "
                                           "path, such as billing.example.com/dunning).")],
) -> None:
    """Make a checkpoint key pair: the private key (for DUNNING_CHECKPOINT_KEY, kept
    secret) on the first line, the public key (for auditors) on the second."""
    from worker.contact_log.note import NoteError, keygen

    try:
        private, public = keygen(name)
    except NoteError as error:
        err.print(f"--name: {error}", markup=False)
        raise typer.Exit(2) from None
    out.print(private, markup=False, soft_wrap=True)
    out.print(public, markup=False, soft_wrap=True)


@log_app.command("checkpoint")
def log_checkpoint(
    make: Annotated[bool, typer.Option("--make", help="Make one now (with DUNNING_CHECKPOINT_KEY), even if "
                                                      "nothing was written since the last.")] = False,
) -> None:
    """Print the latest signed checkpoint of the log's chains (the worker makes one every
    DUNNING_CHECKPOINT_EVERY_S while events come in): keep it outside the database."""
    from datetime import UTC, datetime

    from worker import wiring
    from worker.settings import Settings

    settings = Settings.from_env()
    checkpoints = wiring.books(open_log()).checkpoints
    if make:
        signer = wiring.signer(settings)
        if signer is None:
            err.print("--make: DUNNING_CHECKPOINT_KEY is not set (`dunning log keygen` makes a key)", markup=False)
            raise typer.Exit(2)
        checkpoints.make(signer, datetime.now(UTC), settings.checkpoint_dir, always=True)
    note = checkpoints.latest()
    if note is None:
        err.print("no checkpoint yet: the worker makes them with DUNNING_CHECKPOINT_KEY set "
                  "(or `dunning log checkpoint --make`)", markup=False)
        raise typer.Exit(1)
    sys.stdout.write(note)


@log_app.command("backup")
def log_backup(
    folder: Annotated[Path, typer.Argument(help="Where the backup goes (made if missing); keep it off this host.")],
) -> None:
    """Back the whole database up while workers run (PostgreSQL: pg_dump's custom format;
    SQLite: the online backup API), with a manifest of what it holds — the newest event
    and every chain's head as of the copy itself — and, with DUNNING_CHECKPOINT_KEY, a
    signed checkpoint of them. After a restore, `dunning log verify --checkpoint` (or
    `--head`) proves the restored log is the one backed up (README: "Backups and restores")."""
    from datetime import UTC, datetime

    from worker import wiring
    from worker.contact_log.backup import BackupError, take
    from worker.settings import Settings

    signer = wiring.signer(Settings.from_env())
    try:
        taken, manifest, checkpoint = take(open_log(), folder, datetime.now(UTC), signer)
    except BackupError as error:
        err.print(f"backup: {error}", markup=False)
        raise typer.Exit(1) from None
    if taken.intact is False:
        err.print(f"backup: {taken.path} was written, but its chains do not verify: "
                  "run `dunning log verify` on the live log", markup=False)
        raise typer.Exit(1)
    out.print(f"backed up: {taken.path} ({taken.events} events; newest {taken.head})", markup=False, soft_wrap=True)
    out.print(f"manifest: {manifest}", markup=False, soft_wrap=True)
    if checkpoint is not None:
        out.print(f"checkpoint: {checkpoint}", markup=False, soft_wrap=True)
    else:
        out.print("no checkpoint (DUNNING_CHECKPOINT_KEY is not set): check a restore with --head", markup=False)


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

