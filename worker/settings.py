"""Configuration from the environment, read once at the edge (CLI, worker start-up).

Secrets (SMTP and Twilio credentials) are read here and nowhere else, and are never
printed: `Settings.__repr__` leaves them out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from worker.render import SHIPPED_DIR, Sender


@dataclass(frozen=True)
class Settings:
    template_dir: Path = SHIPPED_DIR
    profile_dir: Path | None = None
    default_locale: str = "en-US"
    sender: Sender = field(default_factory=Sender)
    database_url: str = "sqlite:///var/dunning.db"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        defaults = Sender()
        sender = Sender(
            name=get("DUNNING_SENDER_NAME") or defaults.name,
            phone=get("DUNNING_SENDER_PHONE") or defaults.phone,
            email=get("DUNNING_SENDER_EMAIL") or defaults.email,
            payment_instructions=get("DUNNING_PAYMENT_INSTRUCTIONS") or defaults.payment_instructions,
            localized={} if get("DUNNING_SENDER_NAME") else defaults.localized,
        )
        template_dir = get("DUNNING_TEMPLATE_DIR")
        profile_dir = get("DUNNING_PROFILE_DIR")
        return cls(template_dir=Path(template_dir) if template_dir else SHIPPED_DIR,
                   profile_dir=Path(profile_dir) if profile_dir else None,
                   default_locale=get("DUNNING_DEFAULT_LOCALE") or "en-US", sender=sender,
                   database_url=get("DUNNING_DATABASE_URL") or cls.database_url)
