"""The bundled sample jobs: twelve business invoices (`portfolio.jsonl`, the etiquette
of DOMAIN.md) and US consumers held to the legal window (`us-consumers.jsonl`), with
what billing said about some of them (`facts.json`). Used by `dunning demo`,
`dunning templates check` and the benchmarks."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from worker import policy
from worker.jobs.contract import Job
from worker.jobs.parse import read_jobs

FOLDER = files(__name__)
SAMPLE_FILES = ("portfolio.jsonl", "us-consumers.jsonl")


def sample_bytes() -> bytes:
    """The sample files as one JSON Lines input."""
    return b"".join(FOLDER.joinpath(name).read_bytes() for name in SAMPLE_FILES)


def sample_jobs() -> list[Job]:
    """The bundled sample jobs (all valid: they name shipped profiles only)."""
    return [p.job for p in read_jobs(sample_bytes(), policy.profiles(None)) if p.job is not None]


def sample_facts() -> dict[str, Any]:
    """What billing said about some samples before the demo runs (paid, promised), by job id."""
    import json

    found: dict[str, Any] = json.loads(FOLDER.joinpath("facts.json").read_text(encoding="utf-8"))
    return found


def many(template: dict[str, Any], count: int, tag: str, stage: str = "due_day") -> list[dict[str, Any]]:
    """`count` jobs shaped like `template`, each its own invoice, account, mailbox and phone
    (so caps per person do not hold them back): load for benchmarks and chaos runs."""
    import copy

    out = []
    for n in range(count):
        job = copy.deepcopy(template)
        job["job_id"] = f"{tag}-{n}/{stage}"
        job["invoice"]["id"] = f"INV-{tag}-{n}"
        job["invoice"]["number"] = f"{tag}-{n}"
        job["debtor"]["account_id"] = f"ACC-{tag}-{n}"
        job["debtor"]["email"] = f"debtor-{tag}-{n}@example.com"
        if job["debtor"].get("phone"):  # a phone of its own too: one shared number would be one chain for all
            job["debtor"]["phone"] = f"+86139{n % 10**8:08d}"
        out.append(job)
    return out
