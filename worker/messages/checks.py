"""`dunning templates check`: render every template with sample jobs and hold it to the rules.

Fails on a render error, an SMS over 10 segments, a missing opt-out line, a
forbidden phrase (COMPLIANCE.md content rules) or an email without a subject; warns
on an SMS over 2 segments. Samples are the bundled sample jobs, rendered with
and without the opt-out line, so the longest real values are tried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from channels.segments import count_segments
from schedules.spec import CHANNELS
from worker.messages.context import compose
from worker.messages.render import Renderer, TemplateError
from worker.messages.sources import Fixed, TemplateSource
from worker.settings import Sender

FORBIDDEN = {  # by language, for the reader; every list applies to every template
    "zh": ("公安", "法院", "拘留", "黑名单", "坐牢", "判刑", "通缉", "派出所"),
    "en": ("arrest", "jail", "prison", "police", "criminal", "blacklist"),
}
_EVERY_PHRASE = tuple(phrase for phrases in FORBIDDEN.values() for phrase in phrases)
SMS_WARN, SMS_MAX = 2, 10


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    template: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.template}: {self.message}"


def check_templates(renderer: Renderer, stages: Sequence[str], samples: Iterable[Any], sender: Sender,
                    only: str | None = None) -> list[Finding]:
    """Every template the renderer has, or `only` one (a draft in the console: the same
    rules, over the messages that template takes part in)."""
    findings: dict[tuple[str, str], Finding] = {}

    def add(finding: Finding) -> None:
        findings.setdefault((finding.template, finding.message), finding)

    def concerned(locale: str, stage: str, channel: str) -> bool:
        if only is None or only == f"{locale}/{stage}.{channel}.j2":
            return True
        return channel == "email" and only in ("email.html.j2", f"{locale}/email.html.j2")

    for name in renderer.env.list_templates(extensions=["j2"]):
        if only is not None and name != only:
            continue
        try:
            renderer.env.get_template(name)
        except Exception as error:  # syntax errors, reported with their line
            line = getattr(error, "lineno", None)
            add(Finding("error", f"{name}:{line}" if line else name, str(getattr(error, "message", error))))
    jobs = list(samples)
    stopped: set[str] = set()  # templates stopped for time: once is enough to say so (each try costs the budget)

    def note(finding: Finding) -> None:
        if "rendering took longer than" in finding.message:
            stopped.add(finding.template.split(":")[0])
        add(finding)

    for locale in renderer.locales():
        local_jobs = [j for j in jobs if renderer.locale_for(j.debtor.locale) == locale] or jobs
        for job in local_jobs:
            for stage in stages:
                for channel in CHANNELS:
                    if not concerned(locale, stage, channel) or \
                            f"{renderer.locale_for(locale)}/{stage}.{channel}.j2" in stopped:
                        continue
                    for with_opt_out in (False, True):
                        _check_one(renderer, job, locale, stage, channel, with_opt_out, sender, note)
    return sorted(findings.values(), key=lambda f: (f.level != "error", f.template, f.message))


def _check_one(renderer: Renderer, job: Any, locale: str, stage: str, channel: str, with_opt_out: bool,
               sender: Sender, add: Callable[[Finding], None]) -> None:
    """One message, composed as the worker composes it (`compose`), for the sample job as
    a person (who gets the opt-out line) or as a business (who does not)."""
    today = job.invoice.due_date + timedelta(days=3)
    kind = "person" if with_opt_out else "business"
    as_kind = job if job.debtor.kind == kind else job.model_copy(
        update={"debtor": job.debtor.model_copy(update={"kind": kind})})
    try:
        message = compose(renderer, as_kind, stage, channel, today, sender, "https://example.com/u/sample",
                          locale=locale)
    except TemplateError as error:
        add(Finding("error", f"{error.name}:{error.line}" if error.line else error.name, error.message))
        return
    words = " ".join(filter(None, (message.subject, message.text))).lower()
    for phrase in _EVERY_PHRASE:  # a debtor reads what is in a template, whatever its locale
        if phrase in words:
            add(Finding("error", message.template, f"forbidden phrase {phrase!r} (threats or impersonation)"))
    if channel == "sms":
        segments = count_segments(message.text)
        if segments.parts > SMS_MAX:
            add(Finding("error", message.template, f"{segments.parts} SMS segments ({segments.encoding}); "
                                                   f"at most {SMS_MAX}"))
        elif segments.parts > SMS_WARN:
            add(Finding("warning", message.template, f"{segments.parts} SMS segments ({segments.encoding}) with "
                                                     f"sample data; more than {SMS_WARN} cost more and may "
                                                     "arrive out of order"))


def check_draft(published: Mapping[str, str], name: str, source: str, stages: Sequence[str], samples: Iterable[Any],
                sender: Sender, default_locale: str = "en-US") -> list[Finding]:
    """A draft, checked as `dunning templates check` checks every template, among the
    published versions it would join: what the console's "Check" and "Publish" and
    `templates import` run. The draft's own stage is checked even if no profile uses it yet."""
    versions = [TemplateSource.of(n, s) for n, s in published.items() if n != name] + [TemplateSource.of(name, source)]
    stage = name.rsplit("/", 1)[-1].split(".")[0]
    wanted = [*stages, stage] if not name.endswith("email.html.j2") and stage not in stages else list(stages)
    return check_templates(Renderer(Fixed(versions, "the draft and the published versions"), default_locale),
                           wanted, samples, sender, only=name)
