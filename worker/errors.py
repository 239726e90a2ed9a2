"""The errors every room may raise and every door (CLI, Python API, server) must say in
words: one bottom module, so that raising one never imports the room that defines it
(dramatiq's `errors.py`, httpx's `_exceptions.py`)."""

from __future__ import annotations


class ConfigError(ValueError):
    """The settings cannot run this command: which variable, and what it needs to be."""


class VaultLocked(ConfigError):
    """Personal data was to be written without the master key: a setting is missing, so
    every door (CLI, Python API, server) says so as it says of any other setting."""


class WrongMasterKey(ConfigError):
    """`DUNNING_MASTER_KEY` does not open this log's keys: another key, or rotated away."""

    def __init__(self) -> None:
        super().__init__("DUNNING_MASTER_KEY does not open this log's keys: it is another key than the one they are "
                         "wrapped under (after `dunning records rotate-key`, every process needs the new one)")


class SchemaError(RuntimeError):
    """The database's schema is not this version's: `dunning migrate` brings it up to date."""
