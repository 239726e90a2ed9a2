"""How an event joins its chain: the chains' locks, their heads, and the one statement a
transaction's events are inserted in. Mixed into `Store` (`store.py`), which says *what*
is written; this says where in the log, and under which lock.

A writer holds the lock of the chain it appends to — and, for a fact about an address
(an opt-out), of that address's chain — from before it writes until it commits, so a
chain's positions are gapless and in commit order. Locks are taken in ascending order,
all a transaction needs at once where it can say them first (`lock`, `locked`): two
writers then never wait for each other in a circle. A transaction that checks before it
writes (a claim reads whether the invoice was paid) takes its locks before the check, so
what it read stays true until it commits.

PostgreSQL: the locks are advisory, (727003, chain), held in memory until the
transaction ends. A transaction's events wait in memory (`_pending`) until it runs any
other statement or commits; then one call of `dunning_append` (migration 0013) takes the
locks it does not hold yet, reads each chain's head, links every event (SHA-256 of the
previous digest, a newline and the canonical content, computed here before any lock:
`chain.link` in SQL) and inserts them all. A batch of appends holds its locks for that
one statement and the commit — where a round trip per event, and per head, was most of
the time the one lock of the log was held (`bench/log.py`).

SQLite has one writer at a time anyway (its write lock, taken by `lock`): heads are read
when a chain is first written in a transaction, events linked in Python, and inserted in
one statement.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Insert, bindparam, func, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from worker.contact_log import chain
from worker.contact_log.kinds import FACT_KINDS
from worker.contact_log.queries import reading
from worker.db.prepared import Inserting, Prepared, on_cursor
from worker.db.schema import chains, events
from worker.db.turns import turns
from worker.db.vault import Vault
from worker.metrics import LOG_APPENDS

# Every column but the id: `_append` gives each one (on SQLite, with its position and digest).
_INSERT_EVENTS = Inserting(insert(events), [column.key for column in events.c if column.key != "id"])
_CHAINS: BindParameter[int] = bindparam("chains", expanding=True)
_CHAIN_COUNT = select(func.count()).select_from(chains).where(chains.c.chain > 0)
_LOCK = text("SELECT pg_advisory_xact_lock(727003, w.k) FROM unnest(CAST(:wanted AS integer[])) "
             "WITH ORDINALITY AS w(k, n) ORDER BY w.n")
_APPEND = text("SELECT dunning_append(CAST(:wanted AS integer[]), CAST(:chains AS integer[]), "
               "CAST(:contents AS json), CAST(:indexes AS text[]))")
_LAST_OF_CHAIN = (select(events.c.position, events.c.digest).where(events.c.chain == chains.c.chain)
                  .order_by(events.c.position.desc()).limit(1).correlate(chains))
_HEADS = Prepared(select(chains.c.chain, _LAST_OF_CHAIN.with_only_columns(events.c.position).scalar_subquery(),
                         _LAST_OF_CHAIN.with_only_columns(events.c.digest).scalar_subquery())
                  .where(chains.c.chain.in_(_CHAINS)), lists=["chains"])
_SHARE_CHAINS = text("SELECT pg_advisory_xact_lock_shared(727003, k) FROM generate_series(1, :count) AS k")
_NEWEST_ID = select(func.coalesce(func.max(events.c.id), 0))
_SQLITE_WRITE_LOCK = "UPDATE jobs SET job_id = job_id WHERE 0"

Held = dict[int, tuple[int, str] | None]  # chain: its head so far (SQLite), None (PostgreSQL: the database keeps it)


class Appending:
    """The chains' side of the log's writes (mixed into `Store`)."""

    engine: Engine
    vault: Vault
    _count: int | None  # K, read once: fixed for the log's life

    def chain_count(self, conn: Connection | None = None) -> int:
        """K: how many chains this log has (recorded when it was created)."""
        if self._count is None:
            with reading(self.engine, conn) as c:
                self._count = int(c.execute(_CHAIN_COUNT).scalar_one())
        return self._count

    def chains_of(self, accounts: Iterable[str | None] = (), indexes: Iterable[str] = ()) -> set[int]:
        """The chains whose locks a write about these accounts and addresses holds: each
        account's (None: the house's) and each address's (by its blind index, `Vault.index`)."""
        count = self.chain_count()
        found = {chain.of_account(a, count) if a is not None else chain.of_house(count) for a in accounts}
        return found | {chain.of_address(index, count) for index in indexes}

    @contextmanager
    def locked(self, conn: Connection | None = None, *, accounts: Iterable[str | None] = (),
               indexes: Iterable[str] = (), house: bool = False) -> Iterator[Connection]:
        """A transaction (the caller's, given `conn`, or a new one committed on leaving)
        holding the locks of these accounts' and addresses' chains (`chains_of`), and the
        house's (people, keys, templates) with `house`; with none of them, of every
        chain: the whole log, as for a rotation of its keys. Checks read inside it about
        them stay true until it writes."""
        accounts, indexes = [*accounts, *([None] if house else [])], list(indexes)
        numbers = self.chains_of(accounts, indexes) if accounts or indexes else None
        with self.within(conn) as c:
            self.lock(c, numbers)
            yield c

    @contextmanager
    def within(self, conn: Connection | None) -> Iterator[Connection]:
        """The caller's transaction when given (group commit, a lock held), else one of its own
        (on SQLite, in its turn among the writers: `worker.db.turns`)."""
        if conn is not None:
            yield conn
        else:
            with turns(self.engine)(), self.engine.begin() as own:
                yield own

    def lock(self, conn: Connection, numbers: Collection[int] | None = None) -> None:
        """Take these chains' locks (None: every chain) until this transaction ends, in
        ascending order, in one statement; those held already are not taken again. A
        chain a transaction finds it needs later (after a higher one) is still taken:
        PostgreSQL breaks the rare circle that may make, failing one transaction, which
        is then retried. SQLite: its write lock (a write that changes nothing takes it
        now, waiting `busy_timeout`), and the chains' heads."""
        held = self._held(conn)
        wanted = range(1, self.chain_count(conn) + 1) if numbers is None else numbers
        missing = sorted(set(wanted) - held.keys())
        if not missing:
            return
        if conn.dialect.name == "postgresql":
            conn.execute(_LOCK, {"wanted": missing})
            held.update(dict.fromkeys(missing))
        else:
            on_cursor(conn, _SQLITE_WRITE_LOCK)
            held.update(self.chain_heads(conn, missing))

    @staticmethod
    def chain_heads(conn: Connection, numbers: Iterable[int]) -> dict[int, tuple[int, str]]:
        """These chains' last positions and digests (0 and the genesis for an empty one),
        in one statement: one snapshot of them all."""
        return {int(number): (int(position or 0), head or chain.GENESIS)
                for number, position, head in _HEADS.rows(conn, {"chains": list(numbers)})}

    def settled(self) -> int:
        """The newest event id at or below which every event is committed: where a reader
        that walks the log by id (the webhooks' cursor) may move to. Ids are given as
        events are inserted, and across chains they do not commit in that order, so on
        PostgreSQL this waits until every chain's writer at this moment has committed
        (every chain's lock shared, for two statements). SQLite has one writer: ids
        commit in order."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(_SHARE_CHAINS, {"count": self.chain_count(conn)})
            return int(conn.execute(_NEWEST_ID).scalar_one())

    def _append(self, conn: Connection, values: Mapping[str, Any], delivery: Mapping[str, Any] | None = None) -> None:
        """Append one event to its chain: its account's; no account, its address's; else
        the house's. Within one chain, ids grow in commit order; across chains they do not."""
        count = self.chain_count(conn)
        address = self.vault.index(values["address"], conn) if values.get("address") else None
        number = (chain.of_account(values["account_id"], count) if values.get("account_id") is not None
                  else chain.of_address(address, count) if address else chain.of_house(count))
        # A fact about an address (an opt-out) also holds the address's lock: a claim to
        # the address from any account waits for it (`facts.Known`'s marks per address).
        wanted = {number, chain.of_address(address, count)} if address and values["kind"] in FACT_KINDS else {number}
        held = self._held(conn)
        if conn.dialect.name == "sqlite" or self.vault.may_make_key(conn, values):
            # A data key may be made as it is sealed: under the locks, so a rotation of
            # the master key (which holds every chain's lock) re-wraps it too.
            self.lock(conn, wanted)
        row = {"address_index": None, **self.vault.seal_event(conn, values), "chain": number}  # chained: ciphertexts
        content = chain.canonical(row, delivery)
        head = held.get(number)
        if head is None:  # PostgreSQL: positions and links are made as the batch is inserted
            _pending(conn).append((row, content, wanted))
            return
        position, linked = head[0] + 1, chain.link(head[1], content)
        _pending(conn).append(({**row, "position": position, "digest": linked}, content, wanted))
        held[number] = (position, linked)

    @staticmethod
    def _held(conn: Connection) -> Held:
        """The chains this transaction holds."""
        transaction = conn.get_transaction()
        kept = conn.info.get("chains")
        if kept is None or kept[0] is not transaction:
            kept = conn.info["chains"] = (transaction, {})
        held: Held = kept[1]
        return held


Pending = list[tuple[dict[str, Any], str, set[int]]]  # (row, canonical content, chains whose locks it needs)


def _pending(conn: Connection) -> Pending:
    """This transaction's appended events not yet sent to the database."""
    transaction = conn.get_transaction()
    kept = conn.info.get("pending")
    if kept is None or kept[0] is not transaction:
        kept = conn.info["pending"] = (transaction, [])
    pending: Pending = kept[1]
    return pending


def flush(conn: Connection, statement: Any = None, *_: Any) -> None:
    """Insert the transaction's pending events, in one statement (the engine calls this
    before every other statement and at commit: `Store.__init__` listens). Before a plain
    insert into another table (a data key), which reads no event, they wait to go with
    the next ones. Statements on the cursor (`worker.db.prepared`: a claim's delivery row,
    its check for news) are not seen by the listener: a claim flushes before it checks."""
    kept = conn.info.get("pending")
    if kept is None or not kept[1] or kept[0] is not conn.get_transaction():
        return
    if isinstance(statement, Insert) and statement.table is not events and statement.select is None:
        return
    batch: Pending = list(kept[1])
    kept[1].clear()
    for pending in batch:
        LOG_APPENDS.labels(pending[0]["chain"]).inc()
    if conn.dialect.name != "postgresql":
        _INSERT_EVENTS.many(conn, [row for row, _, _ in batch])
        return
    wanted = sorted(set().union(*(needs for _, _, needs in batch)))
    conn.info["chains_locked_at"] = conn.execute(_APPEND, {
        "wanted": wanted, "chains": [row["chain"] for row, _, _ in batch],
        # Every column the chain covers, serialized once; a JSON array of them, which psycopg
        # sends as it is (a text[] of JSON is escaped character by character: a quarter of the time).
        "contents": json.dumps([content for _, content, _ in batch], ensure_ascii=False),
        "indexes": [row["address_index"] for row, _, _ in batch]}).scalar()
    held = Appending._held(conn)
    held.update((number, None) for number in wanted if number not in held)
