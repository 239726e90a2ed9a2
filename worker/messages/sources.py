"""Where templates come from (`Sources`): the versions published in the contact log, as
every worker renders them (`Published`), a folder (`Folder`: the shipped templates,
`DUNNING_TEMPLATE_DIR`, a git checkout), or a set that does not change (`Fixed`: the
versions a delivery used; a draft over the published ones).

Each template's version is the SHA-256 of its source, as deliveries record it."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol


@dataclass(frozen=True)
class TemplateSource:
    """One template file as it was when used: name, SHA-256 of its source, the source."""

    name: str
    version: str
    source: str

    @classmethod
    def of(cls, name: str, source: str) -> TemplateSource:
        return cls(name, hashlib.sha256(source.encode("utf-8")).hexdigest(), source)


class UnsafeName(ValueError):
    """A template name that could reach outside the templates: absolute, with `..`, or
    (in a folder) resolving elsewhere through a link. `{% include "../../etc/passwd" %}`
    in an operator's template must never read the host's files."""

    def __init__(self, name: str) -> None:
        super().__init__(f"template name {name!r} is not allowed: names are relative paths inside the "
                         "templates, without '..' (no absolute paths, no links outside)")
        self.name = name


def checked(name: str) -> str:
    """`name` if it is a plain relative path (`zh-CN/due_day.sms.j2`), else `UnsafeName`:
    the rule of Jinja's own `FileSystemLoader`, for every source, the log's and fixed
    sets included (a name there is only a key, but it is the same name a folder reads)."""
    parts = name.split("/")
    if (not name or "\\" in name or "\0" in name or PurePosixPath(name).is_absolute()
            or re.match(r"^[A-Za-z]:", name) or any(part in ("", ".", "..") for part in parts)):
        raise UnsafeName(name)
    return name


class Sources(Protocol):
    """Where templates come from: the contact log's published versions (the worker), a
    folder (`DUNNING_TEMPLATE_DIR`, checks of a git checkout), or a fixed set (the
    versions a delivery used; a draft over the published ones)."""

    where: str  # said in errors: "no such template in …"

    def names(self) -> list[str]: ...

    def get(self, name: str) -> TemplateSource | None: ...

    def generation(self) -> Hashable:
        """Changes whenever a name is added or removed."""
        ...


class Folder:
    """Templates as files in a folder, one subfolder per locale; a file edited is read
    again on its next use (its modification time)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.where = str(directory)
        self._root = directory.resolve()
        self._read: dict[str, tuple[int, TemplateSource]] = {}
        self._names: tuple[Hashable, list[str]] | None = None

    def generation(self) -> Hashable:
        folders = [self.directory, *(p for p in self.directory.iterdir() if p.is_dir())]
        return tuple((str(p), p.stat().st_mtime_ns) for p in folders)

    def names(self) -> list[str]:
        generation = self.generation()
        if self._names is None or self._names[0] != generation:
            found = sorted(p.relative_to(self.directory).as_posix() for p in self.directory.rglob("*.j2")
                           if not any(part.startswith(("_", ".")) for part in p.relative_to(self.directory).parts)
                           and self._inside(p))
            self._names = (generation, found)
        return self._names[1]

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self._root)

    def get(self, name: str) -> TemplateSource | None:
        path = self.directory / checked(name)
        if not self._inside(path):
            raise UnsafeName(name)
        try:
            changed = path.stat().st_mtime_ns
        except OSError:
            return None
        if name not in self._read or self._read[name][0] != changed:
            source = path.read_text(encoding="utf-8")
            self._read[name] = (changed, TemplateSource.of(name, source))
        return self._read[name][1]


class Fixed:
    """A set of template versions that does not change."""

    def __init__(self, sources: Iterable[TemplateSource], where: str = "the kept versions") -> None:
        self.sources = {source.name: source for source in sources}
        self.where = where

    def names(self) -> list[str]:
        return sorted(self.sources)

    def get(self, name: str) -> TemplateSource | None:
        return self.sources.get(checked(name))

    def generation(self) -> Hashable:
        return 0


class Published:
    """The published versions, read from the contact log (`read`: name → source) and read
    again when `generation` (the number of the last publication) changes — asked at most
    once every `every` seconds, so a newly approved version reaches every worker within
    that time, without a restart, for one cheap query per second per process."""

    where = "the contact log's published templates"

    def __init__(self, generation: Callable[[], int], read: Callable[[], Mapping[str, str]],
                 every: float = 1.0) -> None:
        self._generation, self._read, self._every = generation, read, every
        self._held: tuple[int, dict[str, TemplateSource]] | None = None
        self._asked = float("-inf")

    def _fresh(self) -> dict[str, TemplateSource]:
        moment = time.monotonic()  # not the business clock: how stale a cache may be
        if self._held is None or moment - self._asked >= self._every:
            self._asked = moment
            generation = self._generation()
            if self._held is None or self._held[0] != generation:
                self._held = (generation, {name: TemplateSource.of(name, source)
                                           for name, source in self._read().items()})
        return self._held[1]

    def names(self) -> list[str]:
        return sorted(self._fresh())

    def get(self, name: str) -> TemplateSource | None:
        return self._fresh().get(checked(name))

    def generation(self) -> Hashable:
        self._fresh()
        assert self._held is not None
        return self._held[0]
