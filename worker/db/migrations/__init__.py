"""Alembic migrations of the contact log, run on purpose: by `dunning migrate`, and by
`dunning worker` and `dunning serve` as they start. Opening the log never migrates it.

The script location is this package, so migrations ship with the wheel and need no
alembic.ini: `upgrade(engine)` brings any database to the newest schema, and
`pending(engine)` says whether it is behind.

Rolling upgrades: a migration is expand-only (new tables, columns with defaults or
nullable, indexes; nothing the release before reads is dropped, renamed or narrowed),
unless it is named in `STOP_THE_WORLD` with what it needs. So the release before runs
on a database this release migrated, and a process of it that starts then finds a
revision it does not know: newer, not broken. It neither migrates nor refuses
(`upgrade` leaves the schema alone, `pending` is false); what it cannot know is
whether the newer code's migration was one of the stopping kind — the README's
"Upgrading" says to stop the old processes first for those.
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


# Migrations the release before cannot run beside, and what rolling them out needs.
STOP_THE_WORLD = {
    "0013": "the release before would go on writing to the single chain, closed here as chain 0: "
            "stop every worker and server of it, then start this release",
}
# From this revision on, every migration not in STOP_THE_WORLD is expand-only
# (tests/test_upgrades.py reads each one's upgrade()); the ones before predate the rule.
ROLLING_SINCE = "0014"


def upgrade(engine: Engine, revision: str = "head", chains: int | None = None) -> None:
    """Bring the schema to `revision`; `chains` is K for a log made now (see 0013). A
    database a newer release migrated is left as it is (see above)."""
    cfg = config()
    cfg.attributes["chains"] = chains
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several workers may start at once: one migrates, the others wait for it.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727001)")
        if is_newer(MigrationContext.configure(connection).get_current_revision()):
            return
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


def is_newer(revision: str | None) -> bool:
    """Whether a database at `revision` was migrated by a release newer than this code."""
    return revision is not None and revision not in known()


def pending(engine: Engine) -> bool:
    """Whether the database's schema is older than this code's (or absent): a read only.
    Newer is not pending: this code runs on it, as the release before (see above)."""
    found = current(engine)
    return found != head() and not is_newer(found)
