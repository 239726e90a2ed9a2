"""`dunning templates check|preview`: the operator's message templates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from worker.cli.app import templates_app
from worker.cli.common import err, out, parse_now, print_result, profiles_or_exit, read_input
from worker.jobs.parse import read_jobs
from worker.settings import Settings


@templates_app.command("check")
def templates_check() -> None:
    """Render every template with the sample jobs; exit 1 on errors (warnings do not fail)."""
    from worker.jobs.samples import sample_jobs
    from worker.messages.checks import check_templates
    from worker.messages.render import Renderer

    settings = Settings.from_env()
    renderer = Renderer(settings.template_dir, settings.default_locale)
    stages = [s.name for s in profiles_or_exit()["default"].ladder.stages if s.action == "send"]
    findings = check_templates(renderer, stages, sample_jobs(), settings.sender)
    for finding in findings:
        (err if finding.level == "error" else out).print(str(finding), markup=False)
    errors = sum(f.level == "error" for f in findings)
    out.print(f"{len(renderer.env.list_templates(extensions=['j2']))} template(s) in {settings.template_dir}: "
              f"{errors} error(s), {len(findings) - errors} warning(s)")
    raise typer.Exit(1 if errors else 0)


@templates_app.command("preview")
def templates_preview(
    name: Annotated[str, typer.Argument(help="The template (a stage name, e.g. due_day).")],
    job: Annotated[Path, typer.Option(help="A job file (JSON) to fill the template with.")],
    channel: Annotated[str, typer.Option(help="email, sms or voice.")] = "email",
    locale: Annotated[str | None, typer.Option(help="Override the debtor's locale.")] = None,
    now: Annotated[str | None, typer.Option(help="The moment (for days past due); default now.")] = None,
) -> None:
    """Print a message as it would be sent."""
    from channels.segments import count_segments
    from schedules.zones import local_day
    from worker.messages import unsubscribe
    from worker.messages.context import compose
    from worker.messages.render import CHANNELS, Renderer, TemplateError

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
    renderer = Renderer(settings.template_dir, settings.default_locale)
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

