"""The operator's template pages: the list (each template's published version, check
status, what waits for approval) and the editor — a text area with a live preview for
a sample debtor, "Check" (what `dunning templates check` runs), "Save draft",
"Publish" and "Approve" (four eyes, `DUNNING_TEMPLATE_APPROVALS`), history with diffs
and rollback through the same approval. The versions are the log's
(`worker/messages/library.py`); the rules are `worker/messages/checks.py`'s.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from channels.segments import count_segments
from schedules import Profiles
from schedules.spec import CHANNELS
from worker.http.console.guard import Guard
from worker.http.console.pages import HEADERS, fragment, page
from worker.jobs.contract import Job
from worker.jobs.samples import sample_jobs
from worker.messages import unsubscribe
from worker.messages.checks import Finding, check_draft, check_templates
from worker.messages.context import compose
from worker.messages.library import Library, TemplateProblem, Version, VersionState, check_name
from worker.messages.render import Rendered, Renderer, TemplateError
from worker.messages.sources import Fixed, TemplateSource
from worker.policy import profiles
from worker.settings import Settings
from worker.users.people import Session

KINDS = ("person", "business")


@dataclass(frozen=True)
class Sample:
    """The debtor a preview is rendered for."""

    profile: str = "default"
    locale: str = "en-US"
    kind: str = "person"
    amount: Decimal = Decimal("1280.00")
    dpd: int = 0  # days past due: negative before the due date

    @classmethod
    def read(cls, form: FormData | None, name: str, known: Profiles) -> tuple[Sample, list[str]]:
        """From the editor's form (the defaults for the template: its locale, its stage's day)."""
        own = name.split("/")[0] if "/" in name else "en-US"
        stage = name.rsplit("/", 1)[-1].split(".")[0]
        # The first day of the template's stage in the default ladder (0, the due day, otherwise).
        dpd = next((s.from_dpd for s in known["default"].ladder.stages if s.name == stage), 0)
        if form is None:
            return cls(locale=own, dpd=dpd), []
        problems = []
        profile = str(form.get("profile") or "default")
        if profile not in known:
            problems.append(f"Profile: {profile!r} is not a profile")
            profile = "default"
        kind = str(form.get("kind") or "person")
        if kind not in KINDS:
            problems.append(f"Kind: {kind!r}; person or business expected")
            kind = "person"
        try:
            amount = Decimal(str(form.get("amount") or "1280.00"))
            if not amount.is_finite() or amount <= 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
                raise InvalidOperation
        except InvalidOperation:
            problems.append(f"Amount: {form.get('amount')!r}; a positive amount such as 1280.00 expected")
            amount = cls.amount
        try:
            days = int(str(form.get("dpd") or "0"))
            if not -90 <= days <= 3650:
                raise ValueError
        except ValueError:
            problems.append(f"Days past due: {form.get('dpd')!r}; a whole number from -90 to 3650 expected")
            days = dpd
        locale = str(form.get("locale") or own) if "/" not in name else own
        return cls(profile, locale, kind, amount, days), problems


@dataclass(frozen=True)
class Preview:
    rendered: Rendered | None
    problem: str | None = None
    encoding: str | None = None
    segments: int | None = None
    stage: str = ""
    channel: str = ""


def _job(sample: Sample, today: Any) -> Job:
    jobs = sample_jobs()
    language = sample.locale.split("-")[0]
    base = next((j for j in jobs if j.debtor.locale.split("-")[0] == language), jobs[0])
    debtor = base.debtor.model_copy(update={"kind": sample.kind, "locale": sample.locale})
    invoice = base.invoice.model_copy(update={"amount_due": sample.amount,
                                              "due_date": today - timedelta(days=sample.dpd)})
    return base.model_copy(update={"debtor": debtor, "invoice": invoice, "profile": sample.profile})


def preview(published: dict[str, str], name: str, source: str, sample: Sample, settings: Settings,
            now: datetime) -> Preview:
    """The message the draft makes for the sample debtor, composed exactly as the worker composes."""
    parts = name.rsplit("/", 1)[-1].split(".")
    stage, channel = (parts[0], parts[1]) if len(parts) == 3 and parts[1] in CHANNELS else ("due_day", "email")
    versions = [TemplateSource.of(n, s) for n, s in published.items() if n != name] + [TemplateSource.of(name, source)]
    renderer = Renderer(Fixed(versions), settings.default_locale)
    today = now.date()
    job = _job(sample, today)
    address = job.debtor.email if channel == "email" else job.debtor.phone
    link = (unsubscribe.url(settings.public_url, settings.secret_key or "preview", job.debtor.account_id, channel,
                            address or "") if channel == "email" else None)
    try:
        rendered = compose(renderer, job, stage, channel, today, settings.sender, link, locale=sample.locale)
    except TemplateError as error:
        return Preview(None, str(error), stage=stage, channel=channel)
    if channel == "sms":
        counted = count_segments(rendered.text)
        return Preview(rendered, encoding=counted.encoding, segments=counted.parts, stage=stage, channel=channel)
    return Preview(rendered, stage=stage, channel=channel)


def diff(older: Version | None, newer: Version) -> list[tuple[str, str]]:
    """(class, line) of a unified diff from the version before."""
    if older is None:
        return []
    lines = difflib.unified_diff(older.source.splitlines(), newer.source.splitlines(), f"#{older.id}", f"#{newer.id}",
                                 lineterm="", n=2)
    return [("added" if line.startswith("+") and not line.startswith("+++") else
             "removed" if line.startswith("-") and not line.startswith("---") else "", line) for line in lines]


def _stages(known: Profiles) -> list[str]:
    return [s.name for s in known["default"].ladder.stages if s.action == "send"]


class Editor:
    """The operator's template pages: the list with each template's checks, the editor
    with its preview and history, and saving, publishing, rolling back and approving."""

    def __init__(self, library: Library, settings: Settings, now: Callable[[], datetime]) -> None:
        self.library, self.settings, self.now = library, settings, now
        self.checked: dict[int, dict[str, list[Finding]]] = {}

    def published(self) -> dict[str, str]:
        return self.library.live_or_imported(self.settings.template_dir, self.now())

    def profiles(self) -> Profiles:
        return profiles(self.settings.profile_dir)

    def findings_by_template(self) -> dict[str, list[Finding]]:
        """The published templates' check, once per publication (it renders every sample)."""
        generation = self.library.template_generation()
        if generation not in self.checked:
            renderer = Renderer(Fixed([TemplateSource.of(n, s) for n, s in self.published().items()]),
                                self.settings.default_locale)
            grouped: dict[str, list[Finding]] = {}
            for finding in check_templates(renderer, _stages(self.profiles()), sample_jobs(), self.settings.sender):
                grouped.setdefault(finding.template.split(":")[0], []).append(finding)
            self.checked.clear()
            self.checked[generation] = grouped
        return self.checked[generation]

    def listing(self, session: Session, status: int = 200, problem: str | None = None) -> Response:
        live, found = self.published(), self.findings_by_template()
        versions = self.library.template_versions()
        rows = []
        for name in sorted({v.name for v in versions}):
            own = [v for v in versions if v.name == name]
            parts = name.rsplit("/", 1)
            stage, _, channel = parts[-1].removesuffix(".j2").partition(".")
            rows.append({"name": name, "locale": parts[0] if len(parts) == 2 else "all", "stage": stage,
                         "channel": channel, "live": next((v for v in own if v.state == VersionState.LIVE), None),
                         "waiting": next((v for v in own if v.state == VersionState.PENDING), None),
                         "findings": found.get(name, []) if name in live else []})
        rows.sort(key=lambda r: (r["locale"], r["stage"], r["channel"]))
        return page("templates.html", status, user=session.user, csrf=session.csrf, rows=rows,
                    approvals=self.settings.template_approvals, problem=problem)

    def editor(self, session: Session, name: str, status: int = 200, *, source: str | None = None,
               form: FormData | None = None, shown: Preview | None = None, findings: list[Finding] | None = None,
               done: str | None = None, problem: str | None = None, version: int | None = None) -> Response:
        live = self.published()
        versions = self.library.template_versions(name)
        editing = next((v for v in versions if v.id == version), None) if version else None
        if editing is None:
            editing = next((v for v in versions
                            if v.state in (VersionState.DRAFT, VersionState.PENDING, VersionState.LIVE)), None)
        text = source if source is not None else (editing.source if editing else "")
        sample, problems = Sample.read(form, name, self.profiles())
        if shown is None and text:
            shown = preview(live, name, text, sample, self.settings, self.now())
        history = [{"v": v, "diff": diff(versions[i + 1] if i + 1 < len(versions) else None, v)}
                   for i, v in enumerate(versions)]
        return page("template_editor.html", status, user=session.user, csrf=session.csrf, name=name, source=text,
                    editing=editing, sample=sample, problems=problems, shown=shown, findings=findings, done=done,
                    problem=problem, history=history,
                    waiting=next((v for v in versions if v.state == VersionState.PENDING), None),
                    profiles=sorted(self.profiles()), locales=sorted({n.split("/")[0] for n in live if "/" in n}),
                    kinds=KINDS, approvals=self.settings.template_approvals)

    def check(self, name: str, source: str) -> list[Finding]:
        return check_draft(self.published(), name, source, _stages(self.profiles()), sample_jobs(),
                           self.settings.sender, self.settings.default_locale)

    async def list_view(self, request: Request, session: Session) -> Response:
        return await run_in_threadpool(self.listing, session)

    async def new(self, request: Request, session: Session) -> Response:
        name = request.query_params.get("name", "").strip()
        try:
            check_name(name)
        except TemplateProblem as problem:
            return await run_in_threadpool(self.listing, session, 422, str(problem))
        return RedirectResponse(f"/console/templates/edit/{name}", status_code=303, headers=HEADERS)

    async def edit_view(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        wanted = request.query_params.get("version", "")
        try:
            check_name(name)
        except TemplateProblem as problem:
            return page("error.html", 404, user=session.user, csrf=session.csrf, title="No such template",
                        message=str(problem))
        return await run_in_threadpool(lambda: self.editor(session, name,
                                                           version=int(wanted) if wanted.isdigit() else None))

    async def live_preview(self, request: Request, session: Session) -> Response:
        """The preview pane alone, for the editor's script (as the page's Preview button shows it)."""
        name = request.path_params["name"]
        form = await request.form()
        sample, problems = Sample.read(form, name, self.profiles())

        def pane() -> Response:
            shown = preview(self.published(), name, str(form.get("source") or ""), sample, self.settings, self.now())
            return fragment("_preview.html", shown=shown, problems=problems)
        return await run_in_threadpool(pane)

    async def act(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        form = await request.form()
        action, source = str(form.get("action") or "preview"), str(form.get("source") or "").replace("\r\n", "\n")
        try:
            check_name(name)
        except TemplateProblem as problem:
            return page("error.html", 404, user=session.user, csrf=session.csrf, title="No such template",
                        message=str(problem))
        return await run_in_threadpool(self.acted, session, name, action, source, form)

    def acted(self, session: Session, name: str, action: str, source: str, form: FormData) -> Response:
        if action == "preview":
            return self.editor(session, name, source=source, form=form)
        if action == "check":
            found = self.check(name, source)
            return self.editor(session, name, 200, source=source, form=form, findings=found,
                               done="The checks pass." if not any(f.level == "error" for f in found) else None)
        steps = {"save": self.save, "publish": self.publish, "rollback": self.publish, "approve": self.approve}
        if action not in steps:
            return page("error.html", 400, user=session.user, csrf=session.csrf, title="Unknown action",
                        message=f"{action!r} is not something the editor does.")
        try:
            return steps[action](session, name, action, source, form)
        except (TemplateProblem, ValueError) as problem:
            return self.editor(session, name, 409 if isinstance(problem, TemplateProblem) else 422, source=source,
                               form=form, problem=str(problem))

    def save(self, session: Session, name: str, action: str, source: str, form: FormData) -> Response:
        draft = self.library.save_template(name, source, session.user.name, self.now())
        return self.editor(session, name, source=source, form=form, version=draft.id,
                           done=f"Saved as draft #{draft.id}.")

    def publish(self, session: Session, name: str, action: str, source: str, form: FormData) -> Response:
        """Publish what is in the editor — or, rolling back, an older version as a new one."""
        by, note = session.user.name, None
        if action == "rollback":
            older = self.library.template_version(int(str(form.get("version") or "0")))
            if older is None or older.name != name:
                raise TemplateProblem("no such version of this template to roll back to")
            source, note = older.source, f"rolled back to #{older.id}"
        found = self.check(name, source)
        newest = next(iter(self.library.template_versions(name)), None)
        draft = (newest if newest is not None and note is None and newest.state == VersionState.DRAFT
                 and newest.author == by and newest.source == source  # the draft just saved
                 else self.library.save_template(name, source, by, self.now(), note=note))
        if any(f.level == "error" for f in found):
            return self.editor(session, name, 422, source=source, form=form, findings=found, version=draft.id,
                               problem=f"Saved as draft #{draft.id}, not published: it fails its checks.")
        done = self.library.publish_template(draft.id, by, self.now(), self.settings.template_approvals)
        said = (f"Version #{done.id} is live." if done.state == VersionState.LIVE else
                f"Version #{done.id} is published and waits for another operator's approval.")
        return self.editor(session, name, source=source, form=form, version=done.id, findings=found, done=said)

    def approve(self, session: Session, name: str, action: str, source: str, form: FormData) -> Response:
        wanted = int(str(form.get("version") or "0"))
        pending = self.library.template_version(wanted)
        if pending is not None and pending.state == VersionState.PENDING:
            found = self.check(name, pending.source)  # the published set may have moved since
            if any(f.level == "error" for f in found):
                return self.editor(session, name, 422, findings=found, version=wanted,
                                   problem=f"Version #{wanted} fails its checks now: not approved.")
        approved = self.library.approve_template(wanted, session.user.name, self.now())
        return self.editor(session, name, version=approved.id, done=f"Version #{approved.id} is live.")


def add(routes: APIRouter, guard: Guard, library: Library, settings: Settings, now: Callable[[], datetime]) -> None:
    pages, operator = Editor(library, settings, now), guard("operator")
    routes.get("/templates")(operator(pages.list_view))
    routes.get("/templates/new")(operator(pages.new))
    routes.get("/templates/edit/{name:path}")(operator(pages.edit_view))
    routes.post("/templates/preview/{name:path}")(operator(pages.live_preview))
    routes.post("/templates/edit/{name:path}")(operator(pages.act))
