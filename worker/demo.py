"""`dunning demo`: the bundled sample portfolio, decided at a fixed moment.

Fixed clock and embedded data, so every run on every machine shows the same table:
what each debtor would get now, or when and why not.
"""

from __future__ import annotations

import json
from datetime import datetime
from importlib.resources import files

from rich.console import Console
from rich.table import Table

from schedules import Facts
from worker import policy
from worker.intake import read_jobs
from worker.job import Job
from worker.masking import mask_text

_SAMPLES = files("worker").joinpath("samples")


def sample_jobs() -> list[Job]:
    """The bundled portfolio's jobs (all valid)."""
    parsed = read_jobs(_SAMPLES.joinpath("portfolio.jsonl").read_bytes(), policy.profiles())
    return [p.job for p in parsed if p.job is not None]


def run(now: datetime, console: Console) -> None:
    facts = json.loads(_SAMPLES.joinpath("facts.json").read_text(encoding="utf-8"))
    parsed = list(read_jobs(_SAMPLES.joinpath("portfolio.jsonl").read_bytes(), policy.profiles()))
    table = Table("job", "debtor", "profile", "local time", "decision", "reasons", "rules",
                  title=f"Decisions at {now.isoformat()}", show_lines=True)
    for result in parsed:
        if result.job is None:
            table.add_row(result.job_id or result.where, "", "", "", "[red]invalid[/]", "\n".join(result.errors), "")
            continue
        job = result.job
        known = Facts.model_validate_json(json.dumps(facts.get(job.job_id, {})))
        decision = policy.decide(job, now, known)
        zone = decision.zones[0] if decision.zones else "?"
        local = now.astimezone(decision.at.tzinfo if decision.at else decision.until.tzinfo
                               if decision.until else now.tzinfo)
        what = {"send": f"[green]send {decision.channel}[/]",
                "defer": f"[yellow]defer → {decision.until:%a %d %b %H:%M}[/]" if decision.until else "defer",
                "skip": "[dim]skip[/]", "escalate": "[magenta]escalate[/]"}[decision.action]
        table.add_row(job.job_id, f"{mask_text(job.debtor.name)}\n{zone}", job.profile, f"{local:%a %d %b %H:%M}",
                      what, "\n".join(decision.reasons), ", ".join(decision.rules))
    console.print(table)
    console.print("Decide one yourself: dunning decide JOB.json --now 2026-12-02T10:00:00+08:00 [--facts FACTS.json]")
