"""API keys for the billing API, kept in the log's database: only a SHA-256 of each key is
stored (the key is printed once, when it is made); making and revoking one is an event
in the chained log, so compliance sees who could call the API and since when.

A key is `dk_` and 43 URL-safe characters (256 random bits): a hash without a salt or
work factor is enough for a secret that cannot be guessed (argon2 is for passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from worker.contact_log.kinds import Event, KeyStatus, Kind
from worker.contact_log.store import Store
from worker.db.schema import api_keys

PREFIX = "dk_"
SCOPES = ("jobs:write", "events:write", "read")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is bookkeeping: not a write per request


class KeyProblem(ValueError):
    """A key cannot be made as asked: which part, and what was expected."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    prefix: str  # the first characters of the key, to tell keys apart in a list
    scopes: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """`jobs:write,read` → the scopes; KeyProblem naming any that is not one of `SCOPES`."""
    wanted = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise KeyProblem(f"--scopes: {', '.join(unknown) or 'none given'}; "
                         f"a comma-separated list of {', '.join(SCOPES)} expected")
    return frozenset(wanted)


class Keys:
    """The API keys' reads and writes; making and revoking one go into the chain through `log`."""

    def __init__(self, log: Store) -> None:
        self.log = log
        self.engine = log.engine

    def create_key(self, name: str, scopes: frozenset[str], now: datetime, by: str) -> str:
        """Make a key; returns it (the only time it exists outside the caller's hands)."""
        if not _NAME.match(name):
            raise KeyProblem(f"NAME: {name!r}; letters, digits, '.', '_' or '-' (at most 100) expected")
        key = PREFIX + secrets.token_urlsafe(32)
        try:
            with self.log.locked(house=True) as conn:
                conn.execute(insert(api_keys).values(name=name, prefix=key[:10], digest=digest(key),
                                                     scopes=",".join(sorted(scopes)), created_at=now))
                self.log.record(Event(Kind.KEY, KeyStatus.CREATED, detail={"name": name, "scopes": sorted(scopes),
                                                                       "prefix": key[:10], "by": by}), now, conn)
        except IntegrityError:
            raise KeyProblem(f"NAME: a key named {name!r} exists already (revoke it, or choose another name)") from None
        return key

    def revoke_key(self, name: str, now: datetime, by: str) -> bool:
        """Revoke a key at once; False if no live key has this name."""
        with self.log.locked(house=True) as conn:
            done = conn.execute(update(api_keys).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                                .values(revoked_at=now)).rowcount
            if done:
                self.log.record(Event(Kind.KEY, KeyStatus.REVOKED, detail={"name": name, "by": by}), now, conn)
        return bool(done)

    def api_keys(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            return [ApiKey(r.name, r.prefix, frozenset(r.scopes.split(",")), r.created_at, r.last_used_at,
                           r.revoked_at) for r in conn.execute(select(api_keys).order_by(api_keys.c.id))]

    def authenticate(self, key: str, now: datetime) -> ApiKey | None:
        """The live key `key` is, or None (unknown, revoked, malformed). The stored digest is
        compared in constant time; last use is noted at most once a minute."""
        if not key.startswith(PREFIX) or len(key) > 200:
            return None
        wanted = digest(key)
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.digest == wanted)).first()
        if row is None or not hmac.compare_digest(row.digest, wanted) or row.revoked_at is not None:
            return None
        if row.last_used_at is None or now - row.last_used_at >= _TOUCH_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(last_used_at=now))
        return ApiKey(row.name, row.prefix, frozenset(row.scopes.split(",")), row.created_at, now, None)
