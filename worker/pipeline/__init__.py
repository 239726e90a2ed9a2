"""One reminder's way: decide → render → claim → send → record (`reminder.py`); what it
works with (`services.py`); the supervisor's notice of an escalated case (`escalation.py`)."""

from worker.pipeline.reminder import Pipeline
from worker.pipeline.services import Services

__all__ = ["Pipeline", "Services"]
