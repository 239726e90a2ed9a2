"""Alembic migrations of the contact log, run on purpose: by `dunning migrate`, and by
`dunning worker` and `dunning serve` as they start. Opening the log never migrates it.

The script location is this package, so migrations ship with the wheel and need no
alembic.ini: `upgrade(engine)` brings any database to the newest schema, and
`pending(engine)` says whether it is behind.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    return cfg


def upgrade(engine: Engine, revision: str = "head", chains: int | None = None) -> None:
    """Bring the schema to `revision`; `chains` is K for a log made now (see 0013)."""
    cfg = config()
    cfg.attributes["chains"] = chains
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several workers may start at once: one migrates, the others wait for it.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727001)")
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def head() -> str | None:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The database's revision (None: no schema yet): a read only."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def known() -> set[str]:
    """Every revision this code knows: one the database has that is not among them is newer."""
    return {script.revision for script in ScriptDirectory.from_config(config()).walk_revisions()}


def pending(engine: Engine) -> bool:
    """Whether the database's schema is older than this code's (or absent): a read only."""
    return current(engine) != head()
