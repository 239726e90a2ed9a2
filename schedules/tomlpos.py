"""Find the line of a key in a TOML file, so an operator's mistake is reported where it is.

`tomllib` gives values, not positions. Profiles use plain tables, arrays of tables
(never nested in other arrays) and `key = value` lines, so following headers and
keys line by line is enough to turn a validation error's location
(`("windows", 1, "hours")`) into a line number.
"""

from __future__ import annotations

from collections.abc import Sequence

Location = Sequence[str | int]


def line_of(text: str, location: Location) -> int | None:
    """The first line that goes deepest along `location`: a key, or a table header."""
    target = tuple(location)
    best_line, best_depth = None, -1
    table: tuple[str | int, ...] = ()
    array_counts: dict[tuple[str | int, ...], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            parent = _header(line[2:], "]]")
            index = array_counts.get(parent, -1) + 1
            array_counts[parent] = index
            table = parent + (index,)
            path = table
        elif line.startswith("["):
            table = _header(line[1:], "]")
            path = table
        elif "=" in line:
            path = table + (line.split("=", 1)[0].strip().strip("\"'"),)
        else:
            continue
        depth = min(len(path), len(target))
        if target[:depth] == path[:depth] and depth > best_depth:
            best_line, best_depth = number, depth
    return best_line


def _header(rest: str, closing: str) -> tuple[str | int, ...]:
    name = rest.split(closing, 1)[0]
    return tuple(part.strip().strip("\"'") for part in name.split("."))

