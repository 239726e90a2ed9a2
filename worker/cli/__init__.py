"""The `dunning` command line, one module per command group. With the actors and the
Python API, the one place that reads the wall clock.

Every command exits 0 on success, 1 when the input it was given is wrong (and says
which record, which field, what was expected), 2 on a usage or configuration error
(a bad setting, a database not migrated), 3 when a service it needs (Redis, the
database) is unavailable: try again.
"""

from __future__ import annotations

import sys

from worker.cli import events, jobs, keys, local, log, profiles, records, run, schedule, templates, users, webhooks
from worker.cli.app import app
from worker.cli.common import err

__all__ = ["app", "events", "jobs", "keys", "local", "log", "main", "profiles", "records", "run", "schedule",
           "templates", "users", "webhooks"]


def main() -> None:
    try:
        app()
    except Exception as error:
        # Imported here: a command that raised them has loaded them; `--help` need not.
        from worker.errors import ConfigError, SchemaError

        if isinstance(error, ConfigError):  # a bad setting: name it, no traceback
            err.print(f"configuration: {error}", markup=False)
            sys.exit(2)
        if isinstance(error, SchemaError):  # a database not migrated: say how
            err.print(str(error), markup=False)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
