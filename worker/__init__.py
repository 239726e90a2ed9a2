"""The application: the job contract, intake, the pipeline, the contact log, the CLI.

It composes `schedules/` (when and how often) and `channels/` (how to send).
`worker.enqueue(jobs)`, `worker.paid(invoice)`... are the Python API (see `worker.api`).
"""

from __future__ import annotations

from typing import Any

_API = ("enqueue", "paid", "write_off", "dispute", "promise", "optout", "cease", "Unavailable", "Intake")


def __getattr__(name: str) -> Any:
    """`worker.enqueue`, `worker.paid`... import the API (and its dependencies) on first use."""
    if name in _API:
        from worker import api

        return getattr(api, name)
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
