"""The application: the job contract, intake, the pipeline, the contact log, the CLI.

It composes `schedules/` (when and how often) and `channels/` (how to send).
`worker.enqueue(jobs)` is the Python API for billing systems (see `worker.api`).
"""

from __future__ import annotations

from typing import Any


def enqueue(*args: Any, **kwargs: Any) -> Any:
    from worker.api import enqueue as _enqueue

    return _enqueue(*args, **kwargs)


enqueue.__doc__ = "Queue reminder jobs; see worker.api.enqueue."
