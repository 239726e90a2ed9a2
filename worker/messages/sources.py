"""Where templates come from (`Sources`): the versions published in the contact log, as
every worker renders them (`Published`), a folder (`Folder`: the shipped templates,
`DUNNING_TEMPLATE_DIR`, a git checkout), or a set that does not change (`Fixed`: the
versions a delivery used; a draft over the published ones).

Each template's version is the SHA-256 of its source, as deliveries record it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
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
        self._read: dict[str, tuple[int, TemplateSource]] = {}
        self._names: tuple[Hashable, list[str]] | None = None

    def generation(self) -> Hashable:
        folders = [self.directory, *(p for p in self.directory.iterdir() if p.is_dir())]
        return tuple((str(p), p.stat().st_mtime_ns) for p in folders)

    def names(self) -> list[str]:
        generation = self.generation()
        if self._names is None or self._names[0] != generation:
            found = sorted(p.relative_to(self.directory).as_posix() for p in self.directory.rglob("*.j2")
                           if not any(part.startswith(("_", ".")) for part in p.relative_to(self.directory).parts))
            self._names = (generation, found)
        return self._names[1]

    def get(self, name: str) -> TemplateSource | None:
        path = self.directory / name
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
        return self.sources.get(name)

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
        return self._fresh().get(name)

    def generation(self) -> Hashable:
        self._fresh()
        assert self._held is not None
        return self._held[0]
