"""`dunning templates check|preview|export|import`: the operator's message templates.

The contact log holds every version; the workers render the published ones. `check`
and `preview` read those (or a folder given as `--dir`, e.g. a git checkout, or the
folder itself before the log has any); `export` writes the published versions to a
folder and `import` puts a folder's changes forward as new versions, through the same
checks and approvals as the console's editor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from worker.cli.app import templates_app
from worker.cli.common import By, err, open_books, out, parse_now, print_result, profiles_or_exit, read_input
from worker.messages.sources import Fixed, Folder, Sources, TemplateSource
from worker.settings import Settings

Dir = Annotated[Path | None, typer.Option("--dir", help="A folder of templates (one subfolder per locale) instead "
                                                        "of the versions published in the contact log.")]


def _sources(settings: Settings, directory: Path | None) -> Sources:
    """`--dir`; else the log's published versions; else, before the log has any (no
    worker has started), the folder the first worker will import (`DUNNING_TEMPLATE_DIR`)."""
    if directory is not None:
        if not directory.is_dir():
            err.print(f"--dir: {directory} is not a folder", markup=False)
            raise typer.Exit(2)
        return Folder(directory)
    url = settings.database_url
    if not (url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()):
        from worker import wiring

        try:
            log = wiring.log(settings)
            published = wiring.books(log).library.live_templates()
            log.engine.dispose()
        except Exception:  # noqa: BLE001 — not migrated, or away: the folder is what a worker would start from
            published = {}
        if published:
            return Fixed([TemplateSource.of(n, s) for n, s in published.items()],
                         "the templates published in the contact log")
    return Folder(settings.template_dir)


def _stages() -> list[str]:
    return [s.name for s in profiles_or_exit()["default"].ladder.stages if s.action == "send"]


@templates_app.command("check")
def templates_check(directory: Dir = None) -> None:
    """Render every template with the sample jobs; exit 1 on errors (warnings do not fail)."""
    from worker.jobs.samples import sample_jobs
    from worker.messages.checks import check_templates
    from worker.messages.render import Renderer

    settings = Settings.from_env()
    sources = _sources(settings, directory)
    renderer = Renderer(sources, settings.default_locale)
    findings = check_templates(renderer, _stages(), sample_jobs(), settings.sender)
    for finding in findings:
        (err if finding.level == "error" else out).print(str(finding), markup=False)
    errors = sum(f.level == "error" for f in findings)
    out.print(f"{len(sources.names())} template(s) in {sources.where}: {errors} error(s), "
              f"{len(findings) - errors} warning(s)", markup=False)
    raise typer.Exit(1 if errors else 0)


@templates_app.command("preview")
def templates_preview(
    name: Annotated[str, typer.Argument(help="The template (a stage name, e.g. due_day).")],
    job: Annotated[Path, typer.Option(help="A job file (JSON) to fill the template with.")],
    channel: Annotated[str, typer.Option(help="email, sms or voice.")] = "email",
    locale: Annotated[str | None, typer.Option(help="Override the debtor's locale.")] = None,
    now: Annotated[str | None, typer.Option(help="The moment (for days past due); default now.")] = None,
    directory: Dir = None,
) -> None:
    """Print a message as it would be sent."""
    from channels.segments import count_segments
    from schedules.spec import CHANNELS
    from schedules.zones import local_day
    from worker.jobs.parse import read_jobs
    from worker.messages import unsubscribe
    from worker.messages.context import compose
    from worker.messages.render import Renderer, TemplateError

    if channel not in CHANNELS:
        err.print(f"--channel: {channel!r} is not one of {', '.join(CHANNELS)}", markup=False)
        raise typer.Exit(2)
    results = list(read_jobs(read_input(str(job)), profiles_or_exit()))
    if len(results) != 1 or results[0].job is None:
        for result in results:
            print_result(result, to=err)
        err.print("--job: one valid job expected", markup=False)
        raise typer.Exit(1)
    the_job = results[0].job
    settings = Settings.from_env()
    renderer = Renderer(_sources(settings, directory), settings.default_locale)
    debtor = the_job.debtor
    today = local_day(debtor, parse_now(now))
    address = debtor.email if channel == "email" else debtor.phone
    # A link as long as the worker's (signed the same way), so the preview is the message sent.
    link = unsubscribe.url(settings.public_url, settings.secret_key or "preview", debtor.account_id, channel,
                           address or "") if channel == "email" else None
    try:
        message = compose(renderer, the_job, name, channel, today, settings.sender, link, locale=locale)
    except TemplateError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None
    out.print(f"template: {message.template} (version {message.version[:12]})", markup=False)
    if message.subject is not None:
        out.print(f"subject: {message.subject}", markup=False)
    if channel == "sms":
        segments = count_segments(message.text)
        out.print(f"segments: {segments.parts} ({segments.encoding}, {segments.units} units)", markup=False)
    out.print("", markup=False)
    out.print(message.text, markup=False)
    if message.html is not None:
        out.print(f"\n--- HTML ({message.templates[1].name}) ---\n{message.html}", markup=False)


@templates_app.command("export")
def templates_export(
    directory: Annotated[Path, typer.Argument(help="The folder to write the published templates to.")],
) -> None:
    """Write the published version of every template to a folder (one subfolder per locale),
    to keep in git; files of the same names are replaced."""
    published = open_books().library.live_templates()
    for name, source in sorted(published.items()):
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source, encoding="utf-8")
    out.print(f"{len(published)} published template(s) written to {directory}", markup=False)


@templates_app.command("import")
def templates_import(
    directory: Annotated[Path, typer.Argument(help="A folder of templates (e.g. written by `export`, then edited).")],
    by: By = None,
) -> None:
    """Put forward each template that differs from its published version: checked as
    `check` checks, saved, and published — live once another person approves it in the
    console (DUNNING_TEMPLATE_APPROVALS=2, the default), or at once (1). A template that
    fails its checks is kept as a draft; exit 1."""
    import getpass

    from worker.jobs.samples import sample_jobs
    from worker.messages.checks import check_draft
    from worker.messages.library import TemplateProblem

    if not directory.is_dir():
        err.print(f"DIRECTORY: {directory} is not a folder", markup=False)
        raise typer.Exit(2)
    settings = Settings.from_env()
    library = open_books().library
    now = parse_now(None)
    who = by or f"cli:{getpass.getuser()}"
    library.import_folder(settings.template_dir, now)  # what a worker would start from: only real changes go forward
    folder = Folder(directory)
    published = library.live_templates()
    changed = [name for name in folder.names() if (found := folder.get(name)) and published.get(name) != found.source]
    failed = 0
    for name in changed:
        source = folder.get(name)
        assert source is not None
        findings = check_draft(published, name, source.source, _stages(), sample_jobs(), settings.sender,
                               settings.default_locale)
        errors = [f for f in findings if f.level == "error"]
        try:
            draft = library.save_template(name, source.source, who, now, note=f"imported from {directory}")
        except TemplateProblem as problem:
            err.print(f"{name}: {problem}", markup=False)
            failed += 1
            continue
        if errors:
            failed += 1
            for finding in errors:
                err.print(str(finding), markup=False)
            err.print(f"{name}: kept as draft #{draft.id}, not published: it fails its checks", markup=False)
            continue
        done = library.publish_template(draft.id, who, now, settings.template_approvals)
        out.print(f"{name}: version #{done.id} " + ("live" if done.state == "live" else
                                                       "published, waiting for another person's approval"),
                  markup=False)
    out.print(f"{len(changed)} changed template(s) in {directory}; {failed} not published", markup=False)
    raise typer.Exit(1 if failed else 0)
