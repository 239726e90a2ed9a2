"""A reminder's hot reads on the DBAPI cursor: the SQL SQLAlchemy would send, without its
per-call work.

A reminder reads the log in about five statements (its facts, a claim's check for news,
the chains' heads). Through `Connection.execute`, each costs SQLAlchemy's Python —
compiled-cache lookup, execution context, events, expanding its lists, wrapping rows —
several times what SQLite takes to answer it: in a sampled worker (py-spy --native),
only a sixth of `known`'s time was SQLite's. `Prepared` keeps a Core statement built
from `schema.py` (one source for the SQL), has SQLAlchemy compile it once per dialect
and per length of its lists (`construct_expanded_state`), and runs the result on the
connection's own cursor, with its column types' bind and result processors: the same
statement, values and rows, a fraction of the Python.

Reads only: a write goes through `Connection.execute`, where the log's listeners
(`appending.flush`) see it.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy.exc
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
        raw = conn.connection.dbapi_connection
        cursor = None
        try:
            cursor = raw.cursor()  # type: ignore[union-attr]
            cursor.execute(form.sql, values if form.positional
                           else {placeholder: value for (placeholder, _, _), value in zip(form.slots, values,
                                                                                         strict=True)})
            fetched = cursor.fetchall()
        except dialect.loaded_dbapi.Error as error:  # as SQLAlchemy says it: callers tell an outage by its class
            lost = dialect.is_disconnect(error, raw, cursor)
            if lost:
                conn.invalidate(error)  # not back into the pool
            raise sqlalchemy.exc.DBAPIError.instance(form.sql, values, error, dialect.loaded_dbapi.Error,
                                                     connection_invalidated=lost, dialect=dialect) from error
        finally:
            if cursor is not None:
                cursor.close()
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
