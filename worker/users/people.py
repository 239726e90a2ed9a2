"""The console's people: names, roles, argon2 password hashes; their sign-ins, slowed
after failures per name and per address; their sessions. Adding, disabling and new
passwords are chained events (`Kind.USER`); signing in and out are `Kind.ACCESS`.

A session's cookie carries a random token; the database keeps its SHA-256 (a stolen
database opens no session), the session's CSRF token, and when it was last used, so
it ends after idle time and at sign-out on every server at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from worker.contact_log.kinds import AccessStatus, Event, Kind, UserStatus
from worker.contact_log.store import Store
from worker.db.schema import sessions, sign_in_failures, users

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte of password is an attack, not a password
IDLE = timedelta(minutes=30)  # a session unused this long has ended
FAILURE_WINDOW = timedelta(minutes=15)
FREE_FAILURES = 3  # failures within the window before each next try must wait
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
_HASHER = PasswordHasher()  # argon2id, RFC 9106's second recommended parameters
_TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is bookkeeping: not a write per page


class Role(StrEnum):
    COMPLIANCE = "compliance"
    OPERATOR = "operator"
    ADMIN = "admin"


class PersonProblem(ValueError):
    """A person cannot be added or changed as asked: which part, and what was expected."""


@dataclass(frozen=True)
class Person:
    name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class Session:
    token: str  # for the cookie; never stored
    user: Person
    csrf: str


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise PersonProblem(f"password: {len(password)} characters; at least {MIN_PASSWORD} expected")
    if len(password) > MAX_PASSWORD:
        raise PersonProblem(f"password: at most {MAX_PASSWORD} characters expected")
    return password


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


_DECOY = _HASHER.hash(secrets.token_urlsafe(16))  # checked for unknown names: the same time, the same answer


class People:
    """The people's reads and writes; their events go into the chain through `log`."""

    def __init__(self, log: Store) -> None:
        self.log = log
        self.engine = log.engine

    def add_user(self, name: str, role: str, password: str, now: datetime, by: str) -> Person:
        if not _NAME.match(name):
            raise PersonProblem(f"NAME: {name!r}; letters, digits, '.', '_', '@' or '-' (at most 100) expected")
        try:
            chosen = Role(role)
        except ValueError:
            raise PersonProblem(f"--role: {role!r}; one of {', '.join(Role)} expected") from None
        hashed = _HASHER.hash(check_password(password))
        try:
            with self.log.locked(house=True) as conn:
                conn.execute(insert(users).values(name=name, role=chosen, password_hash=hashed, created_at=now,
                                                  password_changed_at=now))
                self.log.record(Event(Kind.USER, UserStatus.ADDED, detail={"user": name, "role": chosen, "by": by}),
                            now, conn)
        except IntegrityError:
            raise PersonProblem(f"NAME: {name!r} exists already") from None
        return Person(name, chosen, now, None)

    def people(self) -> list[Person]:
        with self.engine.connect() as conn:
            return [Person(r.name, Role(r.role), r.created_at, r.disabled_at)
                    for r in conn.execute(select(users).order_by(users.c.name))]

    def disable_user(self, name: str, now: datetime, by: str) -> bool:
        """Disable a person at once: their sessions end; False if no enabled person has this name."""
        with self.log.locked(house=True) as conn:
            done = conn.execute(update(users).where(users.c.name == name, users.c.disabled_at.is_(None))
                                .values(disabled_at=now)).rowcount
            if done:
                conn.execute(update(sessions).where(sessions.c.user_name == name, sessions.c.ended_at.is_(None))
                             .values(ended_at=now))
                self.log.record(Event(Kind.USER, UserStatus.DISABLED, detail={"user": name, "by": by}), now, conn)
        return bool(done)

    def set_password(self, name: str, password: str, now: datetime, by: str) -> bool:
        """A new password; the person's other sessions end. False if no such person."""
        hashed = _HASHER.hash(check_password(password))
        with self.log.locked(house=True) as conn:
            done = conn.execute(update(users).where(users.c.name == name)
                                .values(password_hash=hashed, password_changed_at=now)).rowcount
            if done:
                conn.execute(update(sessions).where(sessions.c.user_name == name, sessions.c.ended_at.is_(None))
                             .values(ended_at=now))
                self.log.record(Event(Kind.USER, UserStatus.PASSWORD, detail={"user": name, "by": by}), now, conn)
        return bool(done)

    def sign_in_wait(self, name: str, address: str, now: datetime) -> float:
        """Seconds before `name` may try again from `address` (0: now). After
        `FREE_FAILURES` failures within `FAILURE_WINDOW` for the name or the address,
        each next try waits twice as long as the last, from 1 s up to the window."""
        since = now - FAILURE_WINDOW
        with self.engine.connect() as conn:
            counts = [conn.execute(select(func.count(), func.max(sign_in_failures.c.at))
                                   .where(column == value, sign_in_failures.c.at > since)).one()
                      for column, value in ((sign_in_failures.c.user_name, name.casefold()),
                                            (sign_in_failures.c.address, address))]
        count, last = max(((int(c), at) for c, at in counts), key=lambda found: found[0])
        if count < FREE_FAILURES or last is None:
            return 0.0
        wait = min(2.0 ** (count - FREE_FAILURES), FAILURE_WINDOW.total_seconds())
        left: float = (last + timedelta(seconds=wait) - now).total_seconds()
        return max(0.0, left)

    def sign_in(self, name: str, password: str, address: str, now: datetime) -> Session | None:
        """A new session, or None — the same for an unknown name, a wrong password and a
        disabled person, in about the same time (a decoy hash is checked). Every try is
        recorded; a failure counts towards `sign_in_wait`."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        good: bool
        try:
            good = _HASHER.verify(row.password_hash if row is not None else _DECOY, password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            good = False
        if row is None or not good or row.disabled_at is not None:
            with self.log.locked(house=True) as conn:
                conn.execute(insert(sign_in_failures).values(user_name=name.casefold()[:100], address=address[:64],
                                                             at=now))
                conn.execute(delete(sign_in_failures).where(sign_in_failures.c.at < now - FAILURE_WINDOW))
                self.log.record(Event(Kind.ACCESS, AccessStatus.FAILED,
                                  detail={"user": name[:100], "address": address[:64],
                                          "why": "unknown" if row is None else "refused"}), now, conn)
            return None
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.log.locked(house=True) as conn:
            if _HASHER.check_needs_rehash(row.password_hash):
                conn.execute(update(users).where(users.c.id == row.id).values(password_hash=_HASHER.hash(password)))
            conn.execute(insert(sessions).values(digest=_digest(token), user_name=row.name, csrf=csrf,
                                                 address=address[:64], created_at=now, last_seen_at=now))
            self._forget_sessions(conn, now)
            self.log.record(Event(Kind.ACCESS, AccessStatus.SIGNED_IN,
                                  detail={"user": row.name, "address": address[:64]}), now, conn)
        return Session(token, Person(row.name, Role(row.role), row.created_at, None), csrf)

    def session(self, token: str, now: datetime) -> Session | None:
        """The live session of a cookie's token, or None (unknown, ended, idle too long,
        its person disabled). Its last use is noted at most once a minute."""
        if not token or len(token) > 100:
            return None
        wanted = _digest(token)
        with self.engine.connect() as conn:
            row = conn.execute(select(sessions, users.c.role, users.c.created_at.label("user_created_at"),
                                      users.c.disabled_at)
                               .join(users, users.c.name == sessions.c.user_name)
                               .where(sessions.c.digest == wanted)).first()
        if (row is None or not hmac.compare_digest(row.digest, wanted) or row.ended_at is not None
                or row.disabled_at is not None or now - row.last_seen_at > IDLE):
            return None
        if now - row.last_seen_at >= _TOUCH_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(sessions).where(sessions.c.digest == wanted).values(last_seen_at=now))
        return Session(token, Person(row.user_name, Role(row.role), row.user_created_at, None), row.csrf)

    def sign_out(self, token: str, now: datetime, address: str) -> bool:
        wanted = _digest(token)
        with self.log.locked(house=True) as conn:
            row = conn.execute(select(sessions.c.user_name).where(sessions.c.digest == wanted,
                                                                   sessions.c.ended_at.is_(None))).first()
            if row is None:
                return False
            conn.execute(update(sessions).where(sessions.c.digest == wanted).values(ended_at=now))
            self.log.record(Event(Kind.ACCESS, AccessStatus.SIGNED_OUT, detail={"user": row.user_name,
                                                                            "address": address[:64]}), now, conn)
        return True

    def _forget_sessions(self, conn: Connection, now: datetime) -> None:
        """Sessions idle past `IDLE` or ended more than a day ago are forgotten as new ones open."""
        conn.execute(delete(sessions).where(or_(sessions.c.last_seen_at < now - IDLE - timedelta(days=1),
                                                sessions.c.ended_at < now - timedelta(days=1))))
