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
    """The bundled sample jobs (all valid)."""
    return [p.job for p in read_jobs(sample_bytes(), policy.profiles()) if p.job is not None]


def sample_facts() -> dict[str, Any]:
    """What billing said about some samples before the demo runs (paid, promised), by job id."""
    import json

    found: dict[str, Any] = json.loads(FOLDER.joinpath("facts.json").read_text(encoding="utf-8"))
    return found
