"""The Twilio sandbox with a script: failures to answer create requests with, in order,
and the final status per destination number (e.g. 'no-answer', 'undelivered')."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.local.twilio_sandbox import Sandbox


@dataclass
class Script:
    """What the sandbox will do next: failures to answer create requests with, in order,
    and the final status per destination number (e.g. 'no-answer', 'undelivered')."""

    failures: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)


class ScriptedSandbox(Sandbox):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.script = Script()

    def next_failure(self) -> dict[str, Any] | None:
        return self.script.failures.pop(0) if self.script.failures else None

    def final_status(self, to: str, default: str) -> str:
        return self.script.outcomes.get(to, default)
