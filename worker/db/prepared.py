"""A reminder's hot statements on the DBAPI cursor: the SQL SQLAlchemy would send,
without its per-call work. A form is kept per length of each list (for the chains' heads,
at most one per chain count).

A reminder reads the log in about five statements (its facts, a claim's check for news,
the chains' heads). Through `Connection.execute`, each costs SQLAlchemy's Python —
compiled-cache lookup, execution context, events, expanding its lists, wrapping rows —
several times what SQLite takes to answer it: in a sampled worker (py-spy --native),
only a sixth of `known`'s time was SQLite's. `Prepared` keeps a Core statement built
from `schema.py` (one source for the SQL), has SQLAlchemy compile it once per dialect
and per length of its lists (`construct_expanded_state`), and runs the result on the
connection's own cursor, with its column types' bind and result processors: the same
statement, values and rows, a fraction of the Python.

`Inserting` does the same for the two inserts of every reminder (its events, its
delivery row). Neither is seen by the engine's listeners: the log's pending events
(`appending.flush`) are flushed by the caller where a read must see them.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Insert, Table
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.selectable import CompoundSelect, Select

Processor = Callable[[Any], Any]
_Rows = tuple[Callable[..., Any], list[tuple[int, Processor]]]  # a row's maker, and its columns' processors


@dataclass(frozen=True)
class _Slot:
    """Where a call's value goes: parameter `name`, item `item` of it when it is a list."""

    name: str
    item: int | None = None


@dataclass(frozen=True)
class _Form:
    """The statement for one dialect and one length of each list."""

    sql: str
    slots: Sequence[tuple[str, Any, Processor | None]]  # (placeholder, a _Slot or a fixed value, bind processor)
    positional: bool


class Prepared:
    """A Core SELECT run on the DBAPI cursor (`rows`); `lists` names its expanding
    parameters (`bindparam(..., expanding=True)`), whose lengths pick the compiled form."""

    def __init__(self, statement: Select[Any] | CompoundSelect[Any], lists: Sequence[str] = ()) -> None:
        self.statement = statement
        self.lists = tuple(lists)
        self._forms: dict[tuple[str, tuple[int, ...]], _Form] = {}
        self._results: dict[str, _Rows] = {}

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """The statement's rows (named tuples: `row.id`, `row[0]`, `row._mapping`), read
        on `conn`'s DBAPI connection (in its transaction, if it has one)."""
        dialect = conn.dialect
        form = self._form(dialect, tuple(len(params[name]) for name in self.lists))
        values = [_value(source, params, process) for _, source, process in form.slots]
        fetched = on_cursor(conn, form.sql, values if form.positional else
                       {placeholder: value for (placeholder, _, _), value in zip(form.slots, values, strict=True)})
        make, processors = self._result(dialect)
        if processors:
            fetched = [list(row) for row in fetched]
            for row in fetched:
                for index, process in processors:
                    row[index] = process(row[index])
        return [make(*row) for row in fetched]

    def _form(self, dialect: Dialect, lengths: tuple[int, ...]) -> _Form:
        key = (dialect.name, lengths)
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = self._compile(dialect, lengths)
        return form

    def _compile(self, dialect: Dialect, lengths: tuple[int, ...]) -> _Form:
        compiled = self.statement.compile(dialect=dialect)
        # Each parameter bound to a marker saying where its value comes from; expanded,
        # a list's items become parameters of their own, each still carrying its marker.
        markers: dict[str, Any] = {name: [_Slot(name, i) for i in range(n)]
                                   for name, n in zip(self.lists, lengths, strict=True)}
        for name, bind in compiled.binds.items():
            if name not in markers and bind.value is None and bind.callable is None:  # given per call
                markers[name] = _Slot(name)
        state = compiled.construct_expanded_state(markers)
        processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                      for name, bind in compiled.binds.items()}
        order = state.positiontup if compiled.positional else list(state.parameters)
        assert order is not None
        slots = []
        for placeholder in order:
            source = state.parameters[placeholder]
            process = processors.get(source.name if isinstance(source, _Slot) else placeholder)
            if not isinstance(source, _Slot):  # a value written into the statement (`kind.in_(FACT_KINDS)`)
                source = str.__str__(source) if isinstance(source, str) else source  # an enum member: its text
                source, process = (process(source) if process else source), None
            slots.append((placeholder, source, process))
        return _Form(state.statement, slots, compiled.positional)

    def _result(self, dialect: Dialect) -> _Rows:
        found = self._results.get(dialect.name)
        if found is None:
            columns = list(self.statement.selected_columns)
            names = [getattr(column, "key", None) or f"c{i}" for i, column in enumerate(columns)]
            plain: Any = namedtuple("Row", names, rename=True)  # type: ignore[misc]
            # `_mapping`, as SQLAlchemy's rows have it (`Vault.open_row` reads a row so)
            make = type("Row", (plain,), {"__slots__": (), "_mapping": property(plain._asdict)})
            processors: list[tuple[int, Processor]] = [
                (i, process) for i, column in enumerate(columns)
                if (process := column.type.dialect_impl(dialect).result_processor(dialect, None))]
            found = self._results[dialect.name] = (make, processors)
        return found


def _value(source: Any, params: Mapping[str, Any], process: Processor | None) -> Any:
    if isinstance(source, _Slot):
        value = params[source.name] if source.item is None else params[source.name][source.item]
        return process(value) if process is not None else value
    return source


class Inserting:
    """An INSERT of `columns` (each row gives every one) run on the DBAPI cursor: `many`
    rows at once, or `one` row, answering what its RETURNING returns (None: nothing, as
    after ON CONFLICT DO NOTHING)."""

    def __init__(self, statement: Insert, columns: Sequence[str]) -> None:
        self.statement = statement
        self.columns = tuple(columns)
        table = statement.table
        assert isinstance(table, Table)
        self._types = {name: table.c[name].type for name in self.columns}
        self._forms: dict[str, tuple[str, list[tuple[str, Processor | None]], bool]] = {}

    def many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        sql, slots, positional = self._form(conn.dialect)
        on_cursor(conn, sql, [_insert_values(row, slots, positional) for row in rows], many=True)

    def one(self, conn: Connection, row: Mapping[str, Any]) -> Any:
        sql, slots, positional = self._form(conn.dialect)
        returned = on_cursor(conn, sql, _insert_values(row, slots, positional))
        return returned[0][0] if returned else None

    def _form(self, dialect: Dialect) -> tuple[str, list[tuple[str, Processor | None]], bool]:
        form = self._forms.get(dialect.name)
        if form is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=list(self.columns))
            order = compiled.positiontup if compiled.positional else list(self.columns)
            assert order is not None and set(order) == set(self.columns)
            slots = [(name, self._types[name].dialect_impl(dialect).bind_processor(dialect)) for name in order]
            form = self._forms[dialect.name] = (compiled.string, slots, compiled.positional)
        return form


def _insert_values(row: Mapping[str, Any], slots: Sequence[tuple[str, Processor | None]],
                   positional: bool) -> Any:
    values = [process(row[name]) if process is not None else row[name] for name, process in slots]
    return values if positional else dict(zip((name for name, _ in slots), values, strict=True))


def on_cursor(conn: Connection, sql: str, params: Any = (), many: bool = False) -> list[Any]:
    """Run `sql` on `conn`'s DBAPI connection (in its transaction, if it has one); the rows
    it returns. A database error is raised as SQLAlchemy raises it — callers tell an outage
    by its class (`broker.RECOVERABLE`) — and a lost connection leaves the pool."""
    dialect = conn.dialect
    raw = conn.connection.dbapi_connection
    cursor = None
    try:
        cursor = raw.cursor()  # type: ignore[union-attr]
        if many:
            cursor.executemany(sql, params)
            return []
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description is not None else []
    except dialect.loaded_dbapi.Error as error:
        lost = dialect.is_disconnect(error, raw, cursor)
        if lost:
            conn.invalidate(error)  # not back into the pool
        raise sqlalchemy.exc.DBAPIError.instance(sql, params, error, dialect.loaded_dbapi.Error,
                                                 connection_invalidated=lost, dialect=dialect) from error
    finally:
        if cursor is not None:
            cursor.close()
