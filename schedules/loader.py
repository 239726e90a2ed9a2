"""Load policy profiles from TOML, resolve `extends`, and report mistakes by file and line.

Shipped profiles live in `schedules/profiles/`; operators add their own in another
directory. Every profile extends `base` (the legal floor and house caps) whether it
says so or not, and operators cannot replace a shipped profile — only extend it
under a new name — so no configuration can loosen the floor.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from schedules.profile import Profile
from schedules.spec import Ladder, ProfileFile
from schedules.tomlpos import line_of

SHIPPED_DIR = Path(__file__).parent / "profiles"
BASE = "base"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_TOML_LINE = re.compile(r"at line (\d+)")
T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a profile file, located well enough to fix it."""

    path: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ProfileError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class _Source:
    name: str
    path: Path
    text: str
    spec: ProfileFile


class Profiles(Mapping[str, Profile]):
    """The resolved profiles by name; load once, read from many threads."""

    def __init__(self, profiles: dict[str, Profile]) -> None:
        self._profiles = profiles

    def __getitem__(self, name: str) -> Profile:
        return self._profiles[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._profiles))

    def __len__(self) -> int:
        return len(self._profiles)

    @classmethod
    def load(cls, extra_dir: Path | None = None) -> Profiles:
        """All shipped profiles plus the operator's; raises ProfileError listing every problem."""
        profiles, problems = _load(extra_dir)
        if problems:
            raise ProfileError(problems)
        return cls(profiles)


def check(extra_dir: Path | None = None) -> tuple[list[str], list[Problem]]:
    """Names of the profiles that resolve, and every problem found on the way."""
    profiles, problems = _load(extra_dir)
    return sorted(profiles), problems


def _load(extra_dir: Path | None) -> tuple[dict[str, Profile], list[Problem]]:
    problems: list[Problem] = []
    sources: dict[str, _Source] = {}
    for directory in (SHIPPED_DIR, extra_dir):
        if directory is None:
            continue
        if not directory.is_dir():
            problems.append(Problem(directory, None, "", "profile directory does not exist"))
            continue
        for path in sorted(directory.glob("*.toml")):
            source = _read(path, problems)
            if source is None:
                continue
            if source.name in sources:
                problems.append(Problem(path, None, "", f"a shipped profile is named {source.name!r}; "
                                        "extend it under another name instead of replacing it"))
                continue
            sources[source.name] = source
    if BASE not in sources:
        problems.append(Problem(SHIPPED_DIR / f"{BASE}.toml", None, "", "the base profile is missing"))
        return {}, problems
    if sources[BASE].spec.ladder is None:
        problems.append(Problem(sources[BASE].path, None, "ladder", "the base profile must define the ladder"))
        return {}, problems
    profiles: dict[str, Profile] = {}
    for name in sources:
        chain = _ancestry(name, sources, problems)
        if chain is not None:
            profiles[name] = _fold(name, [sources[n] for n in chain])
    return profiles, problems


def _read(path: Path, problems: list[Problem]) -> _Source | None:
    name = path.stem
    if not _NAME.match(name):
        problems.append(Problem(path, None, "", "profile file names use lower-case letters, digits and '-'"))
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as error:
        problems.append(Problem(path, None, "", f"not UTF-8 text ({error.reason})"))
        return None
    except tomllib.TOMLDecodeError as error:
        match = _TOML_LINE.search(str(error))
        problems.append(Problem(path, int(match[1]) if match else None, "", f"not valid TOML: {error}"))
        return None
    try:
        spec = ProfileFile.model_validate(_tuples(data))
    except ValidationError as error:
        for item in error.errors():
            location = item["loc"]
            key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in location).replace(".[", "[")
            message = item["msg"].removeprefix("Value error, ")
            problems.append(Problem(path, line_of(text, location), key, message))
        return None
    return _Source(name, path, text, spec)


def _ancestry(name: str, sources: Mapping[str, _Source], problems: list[Problem]) -> list[str] | None:
    """`name` first, then what it extends depth-first, then `base`; None if unresolvable."""
    order: list[str] = []

    def visit(current: str, trail: tuple[str, ...]) -> bool:
        if current in trail:
            cycle = " → ".join(trail + (current,))
            source = sources[name]
            problems.append(Problem(source.path, line_of(source.text, ["extends"]), "extends", f"cycle: {cycle}"))
            return False
        if current in order:
            return True
        order.append(current)
        source = sources[current]
        for parent in source.spec.extends:
            if parent not in sources:
                known = ", ".join(sorted(sources))
                problems.append(Problem(source.path, line_of(source.text, ["extends"]), "extends",
                                        f"no profile named {parent!r} (known: {known})"))
                return False
            if not visit(parent, trail + (current,)):
                return False
        return True

    if not visit(name, ()):
        return None
    if BASE not in order:
        order.append(BASE)
    return order


def _fold(name: str, chain: list[_Source]) -> Profile:
    specs = [source.spec for source in chain]
    ladder: Ladder = next(spec.ladder for spec in specs if spec.ladder is not None)
    return Profile(
        name=name,
        description=specs[0].description,
        sources=tuple(str(source.path) for source in chain),
        windows=_unique(w for spec in specs for w in spec.windows),
        caps=_unique(c for spec in specs for c in spec.caps),
        cooldowns=_unique(c for spec in specs for c in spec.cooldowns),
        ladder=ladder,
        honour_cease=any(spec.honour_cease for spec in specs),
        phone_zones_always=any(spec.phone_zones == "always" for spec in specs),
        retention=_unique(r for spec in specs for r in spec.retention),
        debtor_kind=next((spec.debtor_kind for spec in specs if spec.debtor_kind is not None), None),
    )


def _unique(items: Iterable[T]) -> tuple[T, ...]:
    return tuple(dict.fromkeys(items))


def _tuples(value: object) -> object:
    """TOML arrays as tuples: the profile models are strict and immutable."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value
