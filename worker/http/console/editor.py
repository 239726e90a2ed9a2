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
from worker.http.console.guard import Guard
from worker.http.console.pages import HEADERS, fragment, page
from worker.jobs.contract import Job
from worker.jobs.samples import sample_jobs
from worker.messages import unsubscribe
from worker.messages.checks import Finding, check_draft, check_templates
from worker.messages.context import compose
from worker.messages.library import Library, TemplateProblem, Version, VersionState, check_name
from worker.messages.render import CHANNELS, Rendered, Renderer, TemplateError
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


def add(routes: APIRouter, guard: Guard, library: Library, settings: Settings, now: Callable[[], datetime]) -> None:
    checked: dict[int, dict[str, list[Finding]]] = {}

    def published() -> dict[str, str]:
        return library.live_or_imported(settings.template_dir, now())

    def stages() -> list[str]:
        return _stages(profiles(settings.profile_dir))

    def findings_by_template() -> dict[str, list[Finding]]:
        """The published templates' check, once per publication (it renders every sample)."""
        generation = library.template_generation()
        if generation not in checked:
            renderer = Renderer(Fixed([TemplateSource.of(n, s) for n, s in published().items()]),
                                settings.default_locale)
            grouped: dict[str, list[Finding]] = {}
            for finding in check_templates(renderer, stages(), sample_jobs(), settings.sender):
                grouped.setdefault(finding.template.split(":")[0], []).append(finding)
            checked.clear()
            checked[generation] = grouped
        return checked[generation]

    def listing(session: Session, status: int = 200, problem: str | None = None) -> Response:
        live = published()
        found = findings_by_template()
        versions = library.template_versions()
        rows = []
        for name in sorted({v.name for v in versions}):
            own = [v for v in versions if v.name == name]
            current = next((v for v in own if v.state == VersionState.LIVE), None)
            waiting = next((v for v in own if v.state == VersionState.PENDING), None)
            parts = name.rsplit("/", 1)
            locale = parts[0] if len(parts) == 2 else "all"
            stage, _, channel = parts[-1].removesuffix(".j2").partition(".")
            rows.append({"name": name, "locale": locale, "stage": stage, "channel": channel, "live": current,
                         "waiting": waiting, "findings": found.get(name, []) if name in live else []})
        rows.sort(key=lambda r: (r["locale"], r["stage"], r["channel"]))
        return page("templates.html", status, user=session.user, csrf=session.csrf, rows=rows,
                    approvals=settings.template_approvals, problem=problem)

    def editor(session: Session, name: str, status: int = 200, *, source: str | None = None,
               form: FormData | None = None, shown: Preview | None = None, findings: list[Finding] | None = None,
               done: str | None = None, problem: str | None = None, version: int | None = None) -> Response:
        live = published()
        versions = library.template_versions(name)
        editing = next((v for v in versions if v.id == version), None) if version else None
        if editing is None:
            editing = next((v for v in versions
                            if v.state in (VersionState.DRAFT, VersionState.PENDING, VersionState.LIVE)), None)
        text = source if source is not None else (editing.source if editing else "")
        sample, problems = Sample.read(form, name, profiles(settings.profile_dir))
        if shown is None and text:
            shown = preview(live, name, text, sample, settings, now())
        history = [{"v": v, "diff": diff(versions[i + 1] if i + 1 < len(versions) else None, v)}
                   for i, v in enumerate(versions)]
        return page("template_editor.html", status, user=session.user, csrf=session.csrf, name=name, source=text,
                    editing=editing, sample=sample, problems=problems, shown=shown, findings=findings, done=done,
                    problem=problem, history=history,
                    waiting=next((v for v in versions if v.state == VersionState.PENDING), None),
                    profiles=sorted(profiles(settings.profile_dir)),
                    locales=sorted({n.split("/")[0] for n in live if "/" in n}),
                    kinds=KINDS, approvals=settings.template_approvals)

    def check(name: str, source: str) -> list[Finding]:
        return check_draft(published(), name, source, stages(), sample_jobs(),
                           settings.sender, settings.default_locale)

    @routes.get("/templates")
    @guard("operator")
    async def templates_list(request: Request, session: Session) -> Response:
        return await run_in_threadpool(listing, session)

    @routes.get("/templates/new")
    @guard("operator")
    async def new_template(request: Request, session: Session) -> Response:
        name = request.query_params.get("name", "").strip()
        try:
            check_name(name)
        except TemplateProblem as problem:
            return await run_in_threadpool(listing, session, 422, str(problem))
        return RedirectResponse(f"/console/templates/edit/{name}", status_code=303, headers=HEADERS)

    @routes.get("/templates/edit/{name:path}")
    @guard("operator")
    async def template_editor(request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        wanted = request.query_params.get("version", "")
        try:
            check_name(name)
        except TemplateProblem as problem:
            return page("error.html", 404, user=session.user, csrf=session.csrf, title="No such template",
                        message=str(problem))
        return await run_in_threadpool(lambda: editor(session, name, version=int(wanted) if wanted.isdigit()
                                                      else None))

    @routes.post("/templates/preview/{name:path}")
    @guard("operator")
    async def live_preview(request: Request, session: Session) -> Response:
        """The preview pane alone, for the editor's script (as the page's Preview button shows it)."""
        name = request.path_params["name"]
        form = await request.form()
        sample, problems = Sample.read(form, name, profiles(settings.profile_dir))

        def pane() -> Response:
            shown = preview(published(), name, str(form.get("source") or ""), sample, settings, now())
            return fragment("_preview.html", shown=shown, problems=problems)
        return await run_in_threadpool(pane)

    @routes.post("/templates/edit/{name:path}")
    @guard("operator")
    async def template_act(request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        form = await request.form()
        action, source = str(form.get("action") or "preview"), str(form.get("source") or "").replace("\r\n", "\n")
        by = session.user.name
        try:
            check_name(name)
        except TemplateProblem as problem:
            return page("error.html", 404, user=session.user, csrf=session.csrf, title="No such template",
                        message=str(problem))

        def act() -> Response:
            if action == "preview":
                return editor(session, name, source=source, form=form)
            if action == "check":
                found = check(name, source)
                return editor(session, name, 200, source=source, form=form, findings=found,
                              done="The checks pass." if not any(f.level == "error" for f in found) else None)
            try:
                if action == "save":
                    draft = library.save_template(name, source, by, now())
                    return editor(session, name, source=source, form=form, version=draft.id,
                                  done=f"Saved as draft #{draft.id}.")
                if action in ("publish", "rollback"):
                    if action == "rollback":
                        older = library.template_version(int(str(form.get("version") or "0")))
                        if older is None or older.name != name:
                            raise TemplateProblem("no such version of this template to roll back to")
                        source_ = older.source
                        note = f"rolled back to #{older.id}"
                    else:
                        source_, note = source, None
                    found = check(name, source_)
                    newest = next(iter(library.template_versions(name)), None)
                    draft = (newest if newest is not None and note is None and newest.state == VersionState.DRAFT
                             and newest.author == by and newest.source == source_  # the draft just saved
                             else library.save_template(name, source_, by, now(), note=note))
                    if any(f.level == "error" for f in found):
                        return editor(session, name, 422, source=source_, form=form, findings=found,
                                      version=draft.id, problem=f"Saved as draft #{draft.id}, not published: it "
                                                                "fails its checks.")
                    done = library.publish_template(draft.id, by, now(), settings.template_approvals)
                    said = (f"Version #{done.id} is live." if done.state == VersionState.LIVE else
                            f"Version #{done.id} is published and waits for another operator's approval.")
                    return editor(session, name, source=source_, form=form, version=done.id, findings=found, done=said)
                if action == "approve":
                    wanted = int(str(form.get("version") or "0"))
                    pending = library.template_version(wanted)
                    if pending is not None and pending.state == VersionState.PENDING:
                        found = check(name, pending.source)  # the published set may have moved since
                        if any(f.level == "error" for f in found):
                            return editor(session, name, 422, findings=found, version=wanted,
                                          problem=f"Version #{wanted} fails its checks now: not approved.")
                    approved = library.approve_template(wanted, by, now())
                    return editor(session, name, version=approved.id, done=f"Version #{approved.id} is live.")
            except (TemplateProblem, ValueError) as problem:
                return editor(session, name, 409 if isinstance(problem, TemplateProblem) else 422, source=source,
                              form=form, problem=str(problem))
            return page("error.html", 400, user=session.user, csrf=session.csrf, title="Unknown action",
                        message=f"{action!r} is not something the editor does.")
        return await run_in_threadpool(act)
