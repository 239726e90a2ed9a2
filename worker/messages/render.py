"""Rendering operator-edited templates into messages: sandboxed, strict, versioned.

Templates live in one folder per locale: `zh-CN/due_day.email.j2` (blocks `subject`
and `text`), `zh-CN/due_day.sms.j2`, `zh-CN/due_day.voice.j2`. The HTML part of an
email is the text laid out by `email.html.j2` (per locale, or the shared one), so an
operator edits one text per stage and the two parts cannot drift apart.

A message is rendered whole before anything is sent: an undefined variable fails
the job with the template's name, line and the variable, never half a message.
Each template's version is the SHA-256 of its source; the sources are kept so the
contact log can reproduce exactly what was sent. Where the sources come from is a
`Sources` (`sources.py`): in the worker, the versions published in the log
(`library.py`), a newly published one picked up within a second without a restart;
a folder for `dunning templates check --dir`; a fixed set to reproduce a message.
"""

from __future__ import annotations

import ctypes
import difflib
import hashlib
import json
import re
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency
from jinja2 import (
    BaseLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    pass_context,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from worker.masking import mask
from worker.messages.sources import Fixed, Folder, Sources, TemplateSource, UnsafeName
from worker.settings import SHIPPED_DIR

RENDER_SECONDS = 2.0  # a template renders in ~25 µs; one that runs for seconds is a loop gone wrong
MAX_OUTPUT = 200_000  # characters a template may produce (and the longest text it may build)
_MAX_INT_BITS = 4096
_PARAGRAPHS = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Rendered:
    """A whole message, ready for a channel. `templates[0]` is the stage's own template."""

    channel: str
    locale: str
    text: str
    templates: tuple[TemplateSource, ...]
    subject: str | None = None
    html: str | None = None

    @property
    def template(self) -> str:
        return self.templates[0].name

    @property
    def version(self) -> str:
        return self.templates[0].version

    @property
    def digest(self) -> str:
        """SHA-256 of what the debtor gets (subject, text, HTML): kept, chained, with the
        claim, so the console can show that a message it reproduces is the one sent."""
        return hashlib.sha256(json.dumps([self.subject, self.text, self.html]).encode()).hexdigest()


class TemplateError(Exception):
    """A template that cannot be rendered: which file, which line, what is wrong."""

    def __init__(self, name: str, line: int | None, message: str) -> None:
        where = f"{name}:{line}" if line else name
        super().__init__(f"{where}: {message}")
        self.name, self.line, self.message = name, line, message


class _SourcesLoader(BaseLoader):
    """Jinja's view of `Sources`; notes the version of each template as it is loaded, and
    loads it again once its version changes (Jinja's `auto_reload` asks `uptodate`)."""

    def __init__(self, sources: Sources) -> None:
        self.found = sources
        self.sources: dict[str, TemplateSource] = {}

    def get_source(self, environment: Any, template: str) -> tuple[str, str | None, Callable[[], bool]]:
        source = self.found.get(template)
        if source is None:
            raise TemplateNotFound(template)
        self.sources[template] = source

        def uptodate() -> bool:
            now = self.found.get(template)
            return now is not None and now.version == source.version
        return source.source, template, uptodate

    def list_templates(self) -> list[str]:
        return self.found.names()


class RenderTimeout(Exception):
    """Raised inside a render that ran past its time budget (see `_Watchdog`)."""


class _Watchdog:
    """Stops a render that runs too long: one thread per process watches the renders in
    progress and raises `RenderTimeout` inside the rendering thread at its deadline
    (`PyThreadState_SetAsyncExc`, delivered at the next bytecode: a template's loops are
    Python code). Single huge operations are refused before they start (`_Bounded`)."""

    def __init__(self) -> None:
        self._active: dict[int, float] = {}
        self._fired: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def limit(self, seconds: float) -> Iterator[None]:
        ident = threading.get_ident()
        with self._lock:
            self._active[ident] = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="render-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._active.pop(ident, None)
                if ident in self._fired:  # fired as the render ended: take the exception back
                    self._fired.discard(ident)
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)

    def _watch(self) -> None:
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self._lock:
                for ident, deadline in list(self._active.items()):
                    if now > deadline and ident not in self._fired:
                        self._fired.add(ident)
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                                   ctypes.py_object(RenderTimeout))


_WATCHDOG = _Watchdog()


class _Bounded(SandboxedEnvironment):
    """Jinja's sandbox, and no operation that would take minutes or gigabytes in one step
    (`10 ** 10 ** 8`, `'x' * 10 ** 9`): Python cannot be interrupted inside them."""

    intercepted_binops = frozenset({"**", "*", "<<"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and right * max(abs(left).bit_length(), 1) > _MAX_INT_BITS:
                raise SecurityError(f"{left} ** {right} is too large a number")
        elif operator == "<<" and isinstance(right, int) and right > _MAX_INT_BITS:
            raise SecurityError(f"shifting by {right} makes too large a number")
        elif operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(times, int) \
                        and len(sequence) * times > MAX_OUTPUT:
                    raise SecurityError(f"repeating {len(sequence)} items {times} times is too large "
                                        f"(at most {MAX_OUTPUT})")
            if isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() + right.bit_length() > _MAX_INT_BITS:
                raise SecurityError("too large a number")
        return super().call_binop(context, operator, left, right)


class Renderer:
    """Renders a stage's message for a channel and locale from the template folder."""

    def __init__(self, templates: Path | Sources = SHIPPED_DIR, default_locale: str = "en-US") -> None:
        self.templates = Folder(templates) if isinstance(templates, Path) else templates
        self.default_locale = default_locale
        self.loader = _SourcesLoader(self.templates)
        self.env = _Bounded(loader=self.loader, undefined=StrictUndefined, auto_reload=True,
                                        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
                                        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
        self.env.filters.update(money=_money, date=_date, mask=_mask)
        self._locales: tuple[Hashable, list[str]] | None = None

    def locales(self) -> list[str]:
        """The locales templates exist for; found again only when a template is added or removed."""
        generation = self.templates.generation()
        if self._locales is None or self._locales[0] != generation:
            self._locales = (generation, sorted({name.split("/")[0] for name in self.templates.names()
                                                 if "/" in name}))
        return self._locales[1]

    def locale_for(self, wanted: str) -> str:
        """The template folder for a locale: exact, else same language, else the default."""
        available = self.locales()
        if wanted in available:
            return wanted
        language = wanted.split("-")[0]
        same = [name for name in available if name.split("-")[0] == language]
        return same[0] if same else self.default_locale

    def render(self, stage: str, channel: str, locale: str, context: Mapping[str, Any]) -> Rendered:
        folder = self.locale_for(locale)
        name = f"{folder}/{stage}.{channel}.j2"
        values = {**context, "locale": folder}
        template = self._load(name)
        if channel != "email":
            text = self._run(name, template, values,
                             lambda: _joined(template.root_render_func(template.new_context(values)))).strip()
            if channel == "sms":
                _require_opt_out(name, values, text)
            return Rendered(channel, folder, text, (self.loader.sources[name],))
        if "subject" not in template.blocks or "text" not in template.blocks:
            raise TemplateError(name, None, "an email template needs a {% block subject %} and a {% block text %}")
        block_context = template.new_context(values)
        subject = self._run(name, template, values, lambda: _joined(template.blocks["subject"](block_context)))
        text = self._run(name, template, values, lambda: _joined(template.blocks["text"](block_context))).strip()
        subject = " ".join(subject.split())
        if not subject:
            raise TemplateError(name, None, "the email subject is empty")
        layout_name = self._layout(folder)
        layout = self._load(layout_name)
        paragraphs = [p.strip() for p in _PARAGRAPHS.split(text) if p.strip()]
        html = self._run(layout_name, layout, values, lambda: _joined(layout.root_render_func(layout.new_context(
            {**values, "subject": subject, "paragraphs": paragraphs}))))
        _require_opt_out(name, values, text)
        return Rendered(channel, folder, text, (self.loader.sources[name], self.loader.sources[layout_name]),
                        subject=subject, html=html)

    def _layout(self, folder: str) -> str:
        own = f"{folder}/email.html.j2"
        return own if self.templates.get(own) is not None else "email.html.j2"

    def _load(self, name: str) -> Any:
        try:
            return self.env.get_template(name)
        except TemplateNotFound:
            raise TemplateError(name, None, f"no such template in {self.templates.where}") from None
        except TemplateSyntaxError as error:
            raise TemplateError(name, error.lineno, f"syntax error: {error.message}") from None
        except UnsafeName as error:
            raise TemplateError(name, None, str(error)) from None
        except (RecursionError, MemoryError, SyntaxError, ValueError) as error:  # compiling it took Python past a limit
            raise TemplateError(name, None, f"cannot be compiled ({type(error).__name__}: too deeply nested or "
                                            "too large)") from None

    def _run(self, name: str, template: Any, values: Mapping[str, Any], work: Callable[[], str]) -> str:
        try:
            with _WATCHDOG.limit(RENDER_SECONDS):
                return work()
        except RenderTimeout as error:
            raise TemplateError(name, _template_line(error, template),
                                f"rendering took longer than {RENDER_SECONDS:g} s (a loop too large?); "
                                "stopped") from None
        except UndefinedError as error:
            line = _template_line(error, template)
            source = self.loader.sources[name].source if name in self.loader.sources else ""
            raise TemplateError(name, line, _undefined(str(error.message), source, line, values)) from None
        except TemplateSyntaxError as error:
            raise TemplateError(name, error.lineno, f"syntax error: {error.message}") from None
        except UnsafeName as error:
            raise TemplateError(name, _template_line(error, template), str(error)) from None
        except Exception as error:  # a filter or the sandbox refused something: still the template's fault
            raise TemplateError(name, _template_line(error, template), f"{type(error).__name__}: {error}") from None


def _joined(chunks: Iterable[str]) -> str:
    """A render's output, stopped once it passes `MAX_OUTPUT` characters."""
    parts, size = [], 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the output passed {MAX_OUTPUT} characters")
            parts.append(chunk)
    except (RenderTimeout, SecurityError) as error:
        # Stopped between two chunks, the template's generator is suspended, not on the
        # stack: note where it stands, for the error's line.
        error.suspended_at = _suspended(chunks)  # type: ignore[union-attr]
        raise
    return "".join(parts)


def _suspended(generator: Any) -> list[tuple[str, int]]:
    """(file, line) of a suspended generator and those it delegates to, outermost first."""
    found = []
    while generator is not None and getattr(generator, "gi_frame", None) is not None:
        frame = generator.gi_frame
        found.append((frame.f_code.co_filename, frame.f_lineno))
        generator = generator.gi_yieldfrom
    return found


def _require_opt_out(name: str, values: Mapping[str, Any], text: str) -> None:
    """Reg F 1006.6(e): where the profile asks for an opt-out line, no message goes without it."""
    line = values.get("opt_out")
    if line and line not in text:
        raise TemplateError(name, None, "the opt-out line is missing (add {{ opt_out }})")


_NO_ATTRIBUTE = re.compile(r"has no attribute '([^']+)'")
_UNDEFINED = re.compile(r"'([^']+)' is undefined")


def _undefined(message: str, source: str, line: int | None, values: Mapping[str, Any]) -> str:
    """Jinja's "'dict object' has no attribute 'nmae'" said as the operator wrote it —
    `debtor.nmae` — with the closest name that exists: "did you mean debtor.name?"."""
    missing = _NO_ATTRIBUTE.search(message)
    if missing:
        attribute = missing.group(1)
        text = source.splitlines()[line - 1] if line and 0 < line <= len(source.splitlines()) else source
        written = re.search(rf"([A-Za-z_][\w.]*)\.{re.escape(attribute)}\b", text)
        owner = written.group(1) if written else None
        known = _names_in(_walk(values, owner)) if owner else []
        said = f"{owner}.{attribute}" if owner else attribute
    else:
        plain = _UNDEFINED.search(message)
        if plain is None:
            return f"undefined variable: {message}"
        said, owner, known = plain.group(1), None, list(values)
        attribute = said
    close = difflib.get_close_matches(attribute, known, n=1)
    hint = f"; did you mean {owner + '.' if owner else ''}{close[0]}?" if close else (
        f" ({owner} has: {', '.join(sorted(known)[:12])})" if owner and known else "")
    return f"undefined variable: {said} is not defined{hint}"


def _walk(values: Mapping[str, Any], dotted: str) -> Any:
    found: Any = values
    for part in dotted.split("."):
        found = found.get(part) if isinstance(found, Mapping) else getattr(found, part, None)
        if found is None:
            return None
    return found


def _names_in(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [str(key) for key in value]
    return [name for name in dir(value) if not name.startswith("_")] if value is not None else []


def _template_line(error: BaseException, template: Any) -> int | None:
    """The line in the template file where rendering failed: the innermost frame of the
    template's compiled code, mapped back to the template's own line numbers."""
    places = [(frame.filename, frame.lineno) for frame in traceback.extract_tb(error.__traceback__)]
    places += getattr(error, "suspended_at", [])
    lines = [line for filename, line in places if filename == template.filename and line is not None]
    return template.get_corresponding_lineno(lines[-1]) if lines else None


def _babel_locale(context: Context) -> Locale:
    return _locale(str(context.get("locale", "en-US")))


@lru_cache(maxsize=256)
def _locale(name: str) -> Locale:
    """Babel scans its data directory on every parse; a locale is parsed once per process."""
    return Locale.parse(name, sep="-")


@pass_context
def _money(context: Context, amount: Decimal, currency: str) -> str:
    """12800.00 CNY → '¥12,800.00' in zh-CN, 'CN¥12,800.00' in en-US (Babel, never float)."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money needs a Decimal amount, got {type(amount).__name__}")
    return str(format_currency(amount, currency, locale=_babel_locale(context)))


@pass_context
def _date(context: Context, value: date, style: str = "long") -> str:
    return str(format_date(value, style, locale=_babel_locale(context)))


def _mask(value: str, field: str = "phone") -> str:
    return mask(field, value)


def stored_renderer(kept: Iterable[TemplateSource], locale: str) -> Renderer:
    """Renders from the template versions a delivery used, as the log kept them — not
    from today's, which may have changed since: how the console shows a message as it
    was sent. `locale` is the folder the message was rendered from."""
    return Renderer(Fixed(kept), locale)
