"""The one door to personal data at rest: seals what is written, opens what is read.

Personal values — a delivery's recipient, an event's address and error text, the
personal parts of an event's detail (`PERSONAL_DETAIL`), a job's JSON — are stored
sealed (`sealing.py`) under the data key of their owner: the account they are about,
or, for an event that names an address and no account (an opt-out from billing, a
text from a number), the address itself. Data keys live in `data_keys`, wrapped by the
master key (`DUNNING_MASTER_KEY`); erasing an owner deletes its key, and every value
sealed under it reads `[erased]` from then on, while the hash chain — which covers
the ciphertexts — still verifies.

Exact-match lookups (an address's opt-outs, the console's search) use blind indexes:
HMAC-SHA-256 of the normalised address under an index key (itself wrapped by the
master key), its first 128 bits in base64url, kept in columns the chain does not
cover, so erasure can clear them.

Values written before sealing existed are plain and are read as they are. Without the
master key, values read `[sealed]` and nothing personal can be written (`VaultLocked`):
`dunning log verify` needs no key; `dunning worker` and `serve` refuse to start.

Unwrapped keys are kept in memory for `KEY_TTL_S`, so a key erased by another process
stops opening values here within that time.
"""

from __future__ import annotations

import base64
import hmac
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from worker.db.schema import data_keys, dead_letters, deliveries, events, jobs, party_marks
from worker.db.sealing import (
    PREFIX,
    Key,
    SealError,
    is_sealed,
    key_id_of,
    new_data_key,
    new_key_id,
    open_sealed,
    seal,
    unwrap,
    wrap,
)
from worker.errors import VaultLocked, WrongMasterKey

ERASED = "[erased]"
_INDEXED = 65_536  # addresses whose blind index is kept: the forecast asks for every pending step's (~8 MB)
SEALED = "[sealed]"
ALTERED = "[does not open: altered]"  # `dunning log verify` says where
PERSONAL_COLUMNS = ("recipient", "address", "error_text", "payload")
PERSONAL_DETAIL = ("address", "from", "to", "body", "note", "search")  # keys of an event's detail
KEY_TTL_S = 60.0
_INDEX_KEY_ID = "index"
# Built once: a statement built per call costs more in SQLAlchemy than the query (a reminder makes one).
_OWNER_COLUMNS = (("account", data_keys.c.account_id), ("address", data_keys.c.address_index))
_KEYS_OF = {kind: select(column, data_keys.c.key_id, data_keys.c.wrapped)
            .where(column.in_(bindparam("owners", expanding=True))) for kind, column in _OWNER_COLUMNS}
_KEY_OF = {kind: select(column, data_keys.c.key_id, data_keys.c.wrapped).where(column == bindparam("owner"))
           for kind, column in _OWNER_COLUMNS}  # one owner: no expanding IN to render each time
# An account's key id and wrapped key as two columns another query can carry (`facts._MARK`: one round trip).
KEY_OF_ACCOUNT = tuple(select(column).where(data_keys.c.account_id == bindparam("key_account")).scalar_subquery()
                       for column in (data_keys.c.key_id, data_keys.c.wrapped))

Owner = tuple[str, str]  # ("account", account id) or ("address", the address's blind index)


class Vault:
    """Seals and opens personal values on one database; safe to share between threads."""

    def __init__(self, engine: Engine, master: bytes | None) -> None:
        self.engine, self._master = engine, master
        self._index_key: bytes | None = None
        self._indexed: dict[str, str] = {}  # address → blind index, the last `_INDEXED` (an HMAC costs ~10 µs)
        self._keys: dict[str, tuple[AESGCM, float]] = {}  # key id → (its cipher, when read)
        self._owners: dict[Owner, tuple[str, float]] = {}  # owner → (key id, when read)
        self._lock = threading.Lock()
        module = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert_key = module.insert(data_keys).on_conflict_do_nothing()

    def _require(self) -> bytes:
        if self._master is None:
            raise VaultLocked("DUNNING_MASTER_KEY is not set: personal data is sealed at rest under it "
                              "(32 random bytes, base64; see the README's Configuration)")
        return self._master

    def check(self) -> None:
        """Raise `VaultLocked` without the master key, `WrongMasterKey` when it does not open
        this log's keys (another key, or one rotated away): what `worker` and `serve` check first."""
        with self.engine.begin() as conn:
            self._index(conn)

    # -- blind indexes ---------------------------------------------------------------

    def index(self, address: str, conn: Connection | None = None) -> str:
        """The blind index of an address (emails compared without case)."""
        known = self._indexed.get(address)
        if known is not None:
            return known
        key = self._index_key
        if key is None:
            if conn is not None:
                key = self._index(conn)
            else:
                with self.engine.begin() as own:
                    key = self._index(own)
        digest = hmac.digest(key, address.strip().casefold().encode(), "sha256")
        mark = base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")  # 128 bits: ample for exact match, short
        if len(self._indexed) >= _INDEXED:  # the oldest half goes (dicts keep insertion order)
            for stale in list(self._indexed)[:_INDEXED // 2]:
                del self._indexed[stale]
        self._indexed[address] = mark
        return mark

    def indexes(self, addresses: Iterable[str], conn: Connection | None = None) -> list[str]:
        return [self.index(address, conn) for address in addresses]

    def _index(self, conn: Connection) -> bytes:
        master = self._require()
        if self._index_key is None:
            wrapped = conn.execute(select(data_keys.c.wrapped).where(data_keys.c.key_id == _INDEX_KEY_ID)).scalar()
            if wrapped is None:
                fresh = new_data_key()
                conn.execute(self._insert_key, {"key_id": _INDEX_KEY_ID, "wrapped": wrap(master, _INDEX_KEY_ID, fresh)})
                wrapped = conn.execute(select(data_keys.c.wrapped)
                                       .where(data_keys.c.key_id == _INDEX_KEY_ID)).scalar_one()
            self._index_key = self._unwrap(_INDEX_KEY_ID, wrapped)
        return self._index_key

    def _unwrap(self, key_id: str, wrapped: str) -> bytes:
        try:
            return unwrap(self._require(), key_id, wrapped)
        except SealError:
            raise WrongMasterKey from None

    # -- data keys -------------------------------------------------------------------

    def owner(self, conn: Connection, account_id: str | None, address: str | None) -> Owner | None:
        """Whose key seals a row's personal values: its account's, else its address's."""
        if account_id:
            return ("account", account_id)
        if address and not is_sealed(address):
            return ("address", self.index(address, conn))
        return None

    def _key_for(self, conn: Connection, owner: Owner) -> tuple[str, Key]:
        """The owner's data key, made (in the caller's transaction) when it has none. A key
        made in a transaction is not remembered beyond it until it is read after commit."""
        found: tuple[str, Key] | None = self._remembered(owner) or _made_here(conn).get(owner)
        if found is not None:
            return found
        self.prepare(conn, [owner])
        return _made_here(conn).get(owner) or self._remembered(owner) or self._key_for(conn, owner)

    def may_make_key(self, conn: Connection, row: Mapping[str, Any]) -> bool:
        """Whether sealing this event row (`seal_event`) may read or make a data key: it
        has a personal value, and its owner's key is not in memory."""
        owner = self.owner(conn, row.get("account_id"), row.get("address"))
        if owner is None or self._remembered(owner) is not None or owner in _made_here(conn):
            return False
        detail = row.get("detail")
        return bool(row.get("address") or row.get("error_text") or (
            detail and any(isinstance(detail.get(k), str) and detail[k] for k in PERSONAL_DETAIL)))

    def remember(self, owner: Owner, key_id: str | None, wrapped: str | None, conn: Connection) -> None:
        """Keep a key another query read (`KEY_OF_ACCOUNT`) in memory, unless it is already,
        was made in this transaction, or none was read (no master key: nothing to open)."""
        if key_id is None or wrapped is None or self._master is None or self._remembered(owner) is not None:
            return
        if key_id in _made_ids(conn):
            return
        cipher, now = AESGCM(self._unwrap(key_id, wrapped)), time.monotonic()
        with self._lock:
            self._owners[owner] = (key_id, now)
            self._keys[key_id] = (cipher, now)

    def _remembered(self, owner: Owner) -> tuple[str, Key] | None:
        now = time.monotonic()
        remembered = self._owners.get(owner)
        if remembered is not None and now - remembered[1] < KEY_TTL_S:
            kept = self._keys.get(remembered[0])
            if kept is not None and now - kept[1] < KEY_TTL_S:
                return remembered[0], kept[0]
        return None

    def prepare(self, conn: Connection, owners: Iterable[Owner], *, make: bool = True) -> None:
        """Have the owners' keys at hand, in as few statements as there are kinds of owner:
        read what exists (remembered), make what does not (with `make`: intake's batch, in
        its transaction; without it, a read before the log's lock is taken)."""
        if self._master is None and not make:
            return
        master = self._require()
        wanted = {owner for owner in owners if self._remembered(owner) is None and owner not in _made_here(conn)}
        for kind in ("account", "address"):
            ids = sorted(owner_id for owner_kind, owner_id in wanted if owner_kind == kind)
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                found = {row[0]: (row[1], row[2]) for row in (
                    conn.execute(_KEY_OF[kind], {"owner": chunk[0]}) if len(chunk) == 1
                    else conn.execute(_KEYS_OF[kind], {"owners": chunk}))}
                now = time.monotonic()
                for owner_id, (key_id, wrapped) in found.items():
                    cipher = AESGCM(self._unwrap(key_id, wrapped))
                    if key_id in _made_ids(conn):
                        continue
                    with self._lock:
                        self._owners[(kind, owner_id)] = (key_id, now)
                        self._keys[key_id] = (cipher, now)
                missing = [owner_id for owner_id in chunk if owner_id not in found]
                if not missing or not make:
                    continue
                self._still_master(conn)
                made = {owner_id: (new_key_id(), new_data_key()) for owner_id in missing}
                conn.execute(self._insert_key, [  # one statement for the batch; a conflict inserts nothing
                    {"key_id": key_id, "wrapped": wrap(master, key_id, key),
                     "account_id": owner_id if kind == "account" else None,
                     "address_index": owner_id if kind == "address" else None}
                    for owner_id, (key_id, key) in made.items()])
                stored = {row[0]: row[1] for row in conn.execute(_KEYS_OF[kind], {"owners": missing})}
                for owner_id, (key_id, key) in made.items():
                    if stored.get(owner_id) == key_id:  # ours; else another process made it first: read again
                        _made_here(conn)[(kind, owner_id)] = (key_id, key)
                        _made_ids(conn).add(key_id)

    def _still_master(self, conn: Connection) -> None:
        """Before a key is made: the master key still opens the log's index key — after a
        rotation, a process still on the old key must not make keys nobody can open."""
        transaction = conn.get_transaction()
        if conn.info.get("vault_checked") is transaction:
            return
        wrapped = conn.execute(select(data_keys.c.wrapped).where(data_keys.c.key_id == _INDEX_KEY_ID)).scalar()
        if wrapped is not None:
            self._unwrap(_INDEX_KEY_ID, wrapped)
        conn.info["vault_checked"] = transaction

    def rotate(self, conn: Connection, new_master: bytes) -> int:
        """Re-wrap every data key (and the index key) under `new_master`; how many. No
        sealed value changes. The caller holds the log's lock and records the rotation."""
        master = self._require()
        rows = conn.execute(select(data_keys.c.key_id, data_keys.c.wrapped)).all()
        for key_id, wrapped in rows:
            conn.execute(update(data_keys).where(data_keys.c.key_id == key_id)
                         .values(wrapped=wrap(new_master, key_id, unwrap(master, key_id, wrapped))))
        self._master = new_master
        self.forget()
        return len(rows)

    def _key_by_id(self, key_id: str, conn: Connection | None) -> Key | None:
        remembered = self._keys.get(key_id)
        now = time.monotonic()
        if remembered is not None and now - remembered[1] < KEY_TTL_S:
            return remembered[0]
        query = select(data_keys.c.wrapped).where(data_keys.c.key_id == key_id)
        if conn is not None:
            wrapped = conn.execute(query).scalar()
        else:
            with self.engine.connect() as own:
                wrapped = own.execute(query).scalar()
        if wrapped is None:
            return None
        cipher = AESGCM(self._unwrap(key_id, wrapped))
        if conn is None or key_id not in _made_ids(conn):
            with self._lock:
                self._keys[key_id] = (cipher, now)
        return cipher

    def forget(self) -> None:
        """Drop every key kept in memory (after an erasure in this process)."""
        with self._lock:
            self._keys.clear()
            self._owners.clear()
            self._indexed.clear()

    # -- sealing ---------------------------------------------------------------------

    def seal(self, conn: Connection, owner: Owner, field: str, value: str) -> str:
        key_id, key = self._key_for(conn, owner)
        return seal(key, key_id, field, value)

    def seal_event(self, conn: Connection, values: Mapping[str, Any]) -> dict[str, Any]:
        """An event row as stored: personal values sealed, the address's blind index beside it."""
        row = dict(values)
        address = row.get("address")
        owner = self.owner(conn, row.get("account_id"), address)
        if address:
            row["address_index"] = self.index(address, conn)
        if owner is None:
            return row
        for name in ("address", "error_text"):
            if row.get(name) and not is_sealed(row[name]):
                row[name] = self.seal(conn, owner, name, row[name])
        detail = row.get("detail")
        if detail and any(isinstance(detail.get(k), str) and detail[k] for k in PERSONAL_DETAIL):
            row["detail"] = {k: (self.seal(conn, owner, f"detail.{k}", v)
                                 if k in PERSONAL_DETAIL and isinstance(v, str) and v and not is_sealed(v) else v)
                             for k, v in detail.items()}
        return row

    def seal_ahead(self, owner: Owner, field: str, value: str) -> str | None:
        """`value` sealed with a key already in memory (None if it is not): work done before
        the log's lock is taken rather than under it."""
        found = self._remembered(owner)
        return seal(found[1], found[0], field, value) if found is not None else None

    def seal_delivery(self, conn: Connection, row: Mapping[str, Any]) -> dict[str, Any]:
        """A delivery row as stored: the recipient sealed under the account's key, and indexed
        (unless `Store.sealed` did it before the lock)."""
        sealed = dict(row)
        if is_sealed(row["recipient"]) and row.get("recipient_index"):
            return sealed
        recipient = str(row["recipient"])
        sealed["recipient_index"] = self.index(recipient, conn)
        sealed["recipient"] = self.seal(conn, ("account", str(row["account_id"])), "recipient", recipient)
        return sealed

    # -- opening ---------------------------------------------------------------------

    def open(self, field: str, value: Any, conn: Connection | None = None) -> Any:
        """A stored value as written: plain values as they are; `[erased]` when its key is
        gone; `[sealed]` without the master key."""
        if not is_sealed(value):
            return value
        if self._master is None:
            return SEALED
        key = self._key_by_id(key_id_of(value), conn)  # WrongMasterKey: say so, never pass it off as erased
        if key is None:
            return ERASED
        try:
            return open_sealed(key, field, value)
        except SealError:
            return ALTERED

    def open_row(self, row: Mapping[Any, Any], conn: Connection | None = None) -> dict[str, Any]:
        """A row read from the log (events, deliveries — also as `d_` columns — or jobs)
        with its personal values opened; blind indexes left out."""
        opened = {name: value for name, value in row.items() if not name.endswith("_index")}
        for name, value in row.items():
            plain = name.removeprefix("d_")
            if plain in PERSONAL_COLUMNS and is_sealed(value):
                opened[name] = self.open(plain, value, conn)
        detail = row.get("detail")
        if isinstance(detail, Mapping) and any(is_sealed(detail.get(k)) for k in PERSONAL_DETAIL):
            opened["detail"] = {k: self.open(f"detail.{k}", v, conn) if k in PERSONAL_DETAIL else v
                                for k, v in detail.items()}
        return opened

    # -- erasure ---------------------------------------------------------------------

    def destroy(self, conn: Connection, account_id: str, addresses: Iterable[str]) -> list[str]:
        """Delete the account's key and its addresses' keys, and clear their blind indexes:
        what makes erasure final. Returns the key ids destroyed."""
        marks = self.indexes(addresses, conn)
        condition = data_keys.c.account_id == account_id
        if marks:
            condition = or_(condition, data_keys.c.address_index.in_(marks))
        gone = list(conn.execute(select(data_keys.c.key_id).where(condition)).scalars())
        conn.execute(delete(data_keys).where(condition))
        conn.execute(update(deliveries).where(deliveries.c.account_id == account_id).values(recipient_index=None))
        about = events.c.account_id == account_id
        conn.execute(update(events).where(or_(about, events.c.address_index.in_(marks)) if marks else about)
                     .values(address_index=None))
        if marks:
            conn.execute(update(deliveries).where(deliveries.c.recipient_index.in_(marks)).values(recipient_index=None))
        conn.execute(delete(dead_letters).where(dead_letters.c.account_id == account_id))
        conn.execute(delete(party_marks).where(party_marks.c.account_id == account_id))  # who its jobs named
        conn.execute(update(jobs).where(jobs.c.account_id == account_id).values(payload=ERASED))
        self.forget()
        return gone

    def index_legacy(self, batch: int = 1000) -> int:
        """Give blind indexes to rows written before sealing (plain addresses), so their
        opt-outs keep matching; returns how many. Idempotent; `worker` and `serve` run it
        as they start."""
        done = 0
        for table, column, mark in ((events, events.c.address, events.c.address_index),
                                    (deliveries, deliveries.c.recipient, deliveries.c.recipient_index)):
            while True:
                with self.engine.begin() as conn:
                    rows = conn.execute(select(table.c.id, column).where(
                        column.is_not(None), mark.is_(None), ~column.startswith(PREFIX)).limit(batch)).all()
                    for row_id, value in rows:
                        conn.execute(update(table).where(table.c.id == row_id)
                                     .values({mark.key: self.index(value, conn)}))
                done += len(rows)
                if len(rows) < batch:
                    break
        return done

def _made_here(conn: Connection) -> dict[Owner, tuple[str, bytes]]:
    """Keys made in `conn`'s current transaction, by owner (not to be remembered beyond it
    before it commits: a rollback takes them back)."""
    return _in_transaction(conn)[0]


def _made_ids(conn: Connection) -> set[str]:
    return _in_transaction(conn)[1]


def _in_transaction(conn: Connection) -> tuple[dict[Owner, tuple[str, bytes]], set[str]]:
    transaction = conn.get_transaction()
    held: tuple[Any, dict[Owner, tuple[str, bytes]], set[str]] | None = conn.info.get("vault")
    if held is None or held[0] is not transaction:
        held = (transaction, {}, set())
        conn.info["vault"] = held
    return held[1], held[2]
