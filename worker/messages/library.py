"""The template library: the operator's templates, every version of each, in the log's database: the one place
every worker host reads the published version from, and the history compliance and
operators read (who wrote, published and approved what, when).

A version is a draft, then published by its author; with four eyes
(`DUNNING_TEMPLATE_APPROVALS=2`) it waits for another person's approval before it goes
live. Going live numbers it (`live_seq`): workers compare the highest number with the
one they hold to know they must read again. Publishing and approving are chained
`template` events. Whether a draft passes its checks is decided before it is handed
here (`checks.py`): this module keeps the record, not the rules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Connection, Row, func, insert, select, update

from worker.contact_log.kinds import Event, Kind, TemplateStatus
from worker.contact_log.store import Store
from worker.db.schema import templates
from worker.messages.sources import Folder, Published

# locale/stage.channel.j2, locale/email.html.j2, or the shared email.html.j2
NAME = re.compile(r"^(?:[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*/)?[a-z0-9_]{1,60}(?:\.[a-z]{2,10}){1,2}\.j2$")
MAX_SOURCE = 100_000  # characters: a reminder's template is a few hundred


class VersionState(StrEnum):
    DRAFT = "draft"  # saved, not put forward
    PENDING = "pending"  # published by its author, waiting for another person's approval
    LIVE = "live"  # what the workers render
    RETIRED = "retired"  # was live, replaced by a newer version
    WITHDRAWN = "withdrawn"  # a draft or pending version overtaken by a newer one before it went live


class TemplateProblem(ValueError):
    """What cannot be done with a template version, in words for the person who asked."""


@dataclass(frozen=True)
class Version:
    id: int
    name: str
    version: str
    source: str
    state: VersionState
    author: str
    created_at: datetime
    note: str | None
    published_by: str | None
    published_at: datetime | None
    approved_by: str | None
    approved_at: datetime | None

    @classmethod
    def of(cls, row: Row[tuple[object, ...]]) -> Version:
        values = row._mapping
        return cls(**{name: values[name] for name in cls.__dataclass_fields__ if name != "state"},
                   state=VersionState(values["state"]))


def digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise TemplateProblem(f"name: {name!r}; LOCALE/STAGE.CHANNEL.j2 expected (e.g. en-US/due_day.sms.j2)")
    return name


class Library:
    """Template versions' reads and writes over the log's store; publishing and approving
    go into the chain through `log`."""

    def __init__(self, log: Store) -> None:
        self.log = log
        self.engine = log.engine
        self.vault = log.vault

    def live_templates(self) -> dict[str, str]:
        """name → source of every live template."""
        with self.engine.connect() as conn:
            return {r.name: r.source for r in conn.execute(
                select(templates.c.name, templates.c.source).where(templates.c.state == VersionState.LIVE))}

    def template_generation(self) -> int:
        """The number of the version that went live last (0: none): changes with every publication."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(templates.c.live_seq))).scalar() or 0)

    def template_states(self) -> dict[str, int]:
        """How many versions are in each state (`VersionState`), every state named."""
        with self.engine.connect() as conn:
            found: dict[str, int] = {state: int(count) for state, count in
                                     conn.execute(select(templates.c.state, func.count()).group_by(templates.c.state))}
        return {state.value: int(found.get(state.value, 0)) for state in VersionState}

    def template_versions(self, name: str | None = None) -> list[Version]:
        """Every version of a template (or of all), newest first."""
        query = select(templates).order_by(templates.c.id.desc())
        if name is not None:
            query = query.where(templates.c.name == name)
        with self.engine.connect() as conn:
            return [Version.of(r) for r in conn.execute(query)]

    def template_version(self, id_: int) -> Version | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(templates).where(templates.c.id == id_)).first()
        return Version.of(row) if row is not None else None

    def seed_templates(self, sources: Mapping[str, str], now: datetime, by: str) -> list[str]:
        """Import templates no version exists for yet as live (the shipped folder or
        `DUNNING_TEMPLATE_DIR`, as a worker starts). A name with a version is left alone:
        the log, not the folder, is the source of truth. Returns the names imported."""
        with self.log.locked(house=True) as conn:
            known = set(conn.execute(select(templates.c.name).distinct()).scalars())
            new = sorted(name for name in sources if name not in known)
            for name in new:
                row = self._insert(conn, name, sources[name], VersionState.DRAFT, by, now, "imported from a folder")
                self._go_live(conn, row, now)
            if new:
                self.log.record(Event(Kind.TEMPLATE, TemplateStatus.IMPORTED, detail={
                    "names": new, "by": by}), now, conn)
        return new

    def import_folder(self, directory: Path, now: datetime) -> list[str]:
        """Templates of `directory` (`DUNNING_TEMPLATE_DIR`, else the shipped one) with no
        version in the log yet, imported as their first, live versions: done as a worker
        process builds its pipeline and as the console first shows templates. The log,
        not the folder, is the truth after."""
        folder = Folder(directory)
        found = {name: source.source for name in folder.names() if (source := folder.get(name)) is not None}
        return self.seed_templates(found, now, by=f"folder:{directory}")

    def live_or_imported(self, directory: Path, now: datetime) -> dict[str, str]:
        """name → source of the live templates, for a reader that may come before any
        worker (the console): with none live yet, `directory` is imported first, as a
        worker would."""
        live = self.live_templates()
        if not live:
            self.import_folder(directory, now)
            live = self.live_templates()
        return live

    def published(self) -> Published:
        """The templates every worker renders: the published versions, a new one noticed within a second."""
        return Published(self.template_generation, self.live_templates)

    def save_template(self, name: str, source: str, by: str, now: datetime, note: str | None = None) -> Version:
        """A new draft; an earlier draft of the same name stays in the history."""
        check_name(name)
        if len(source) > MAX_SOURCE:
            raise TemplateProblem(f"source: {len(source)} characters; at most {MAX_SOURCE}")
        with self.engine.begin() as conn:
            id_ = self._insert(conn, name, source, VersionState.DRAFT, by, now, note)
        found = self.template_version(id_)
        assert found is not None
        return found

    def publish_template(self, id_: int, by: str, now: datetime, approvals: int) -> Version:
        """Put a draft forward: with `approvals` 2 it waits for another person's approval,
        with 1 it is live at once. A version already waiting for the same name is withdrawn.
        The caller has checked the draft (`checks.py`)."""
        with self.log.locked(house=True) as conn:
            found = self._current(conn, id_)
            if found.state != VersionState.DRAFT:
                raise TemplateProblem(f"version #{id_} of {found.name} is {found.state}: only a draft can be published")
            live = conn.execute(select(templates.c.version).where(templates.c.name == found.name,
                                                                  templates.c.state == VersionState.LIVE)).scalar()
            if live == found.version:
                raise TemplateProblem(f"version #{id_} is the same as the live version of {found.name}")
            conn.execute(update(templates).where(templates.c.name == found.name,
                                                 templates.c.state == VersionState.PENDING)
                         .values(state=VersionState.WITHDRAWN))
            conn.execute(update(templates).where(templates.c.id == id_).values(
                state=VersionState.PENDING, published_by=by, published_at=now))
            self.log.record(Event(Kind.TEMPLATE, TemplateStatus.PUBLISHED, detail={
                "name": found.name, "id": id_, "version": found.version, "by": by,
                "approvals": approvals}), now, conn)
            if approvals <= 1:
                self._go_live(conn, id_, now)
        done = self.template_version(id_)
        assert done is not None
        return done

    def approve_template(self, id_: int, by: str, now: datetime) -> Version:
        """The second pair of eyes: a version waiting for approval goes live, unless the
        one approving wrote or published it."""
        with self.log.locked(house=True) as conn:
            found = self._current(conn, id_)
            if found.state != VersionState.PENDING:
                raise TemplateProblem(f"version #{id_} of {found.name} is {found.state}: only a version waiting "
                                      "for approval can be approved")
            if by in (found.author, found.published_by):
                raise TemplateProblem(f"version #{id_} of {found.name} was written or published by {by}: "
                                      "another person must approve it")
            conn.execute(update(templates).where(templates.c.id == id_).values(approved_by=by, approved_at=now))
            self._go_live(conn, id_, now)
            self.log.record(Event(Kind.TEMPLATE, TemplateStatus.APPROVED, detail={
                "name": found.name, "id": id_, "version": found.version, "by": by}), now, conn)
        done = self.template_version(id_)
        assert done is not None
        return done

    def _current(self, conn: Connection, id_: int) -> Version:
        row = conn.execute(select(templates).where(templates.c.id == id_)).first()
        if row is None:
            raise TemplateProblem(f"no template version has the number {id_}")
        return Version.of(row)

    def _insert(self, conn: Connection, name: str, source: str, state: VersionState, by: str, now: datetime,
                note: str | None) -> int:
        result = conn.execute(insert(templates).values(name=name, version=digest(source), source=source, state=state,
                                                       author=by, created_at=now, note=note))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def _go_live(self, conn: Connection, id_: int, now: datetime) -> None:
        """Under the log's lock: the version is live, the one before it retired."""
        name = conn.execute(select(templates.c.name).where(templates.c.id == id_)).scalar_one()
        conn.execute(update(templates).where(templates.c.name == name, templates.c.state == VersionState.LIVE)
                     .values(state=VersionState.RETIRED))
        seq = int(conn.execute(select(func.max(templates.c.live_seq))).scalar() or 0) + 1
        conn.execute(update(templates).where(templates.c.id == id_).values(state=VersionState.LIVE, live_seq=seq))
