"""Templates are bounded: a render that runs too long or grows too large is stopped with
the template's file and line, in the worker and in `templates preview`/`check` alike —
never a hang, never a raw traceback. The sandbox's escapes stay refused."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import SAMPLE
from test_cli import dunning
from test_render import context

from worker.messages.render import RENDER_SECONDS, Renderer, TemplateError
from worker.settings import SHIPPED_DIR

HOSTILE = {
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
                     "rendering took longer than"),
    "a huge power": ("{{ 10 ** (10 ** 8) }}", "too large a number"),
    "a huge string": ("{{ 'x' * 10 ** 9 }}", "too large"),
    "huge output": ("{% for i in range(100000) %}{{ 'xxxxxxxxxx' }}{% endfor %}", "output passed"),
    "deep nesting": ("{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}", "cannot be compiled"),
    "an escape": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    "format escape": ("{{ '{0.__class__}'.format(1) }}", "unsafe"),
}


@pytest.fixture()
def templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(SHIPPED_DIR, target)
    return target


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_template_is_stopped_with_its_file_and_line(templates: Path, name: str) -> None:
    body, expected = HOSTILE[name]
    (templates / "zh-CN" / "due_day.sms.j2").write_text("【{{ sender.name }}】\n\n" + body + "\n{{ opt_out }}\n")
    started = time.monotonic()
    with pytest.raises(TemplateError) as stopped:
        Renderer(templates).render("due_day", "sms", "zh-CN", context(opt_out="回复TD退订"))
    assert time.monotonic() - started < RENDER_SECONDS + 2
    assert expected in str(stopped.value)
    assert str(stopped.value).startswith("zh-CN/due_day.sms.j2")
    if name not in ("deep nesting", "huge output"):
        assert str(stopped.value).startswith("zh-CN/due_day.sms.j2:3:"), "the line of the template"


def test_the_renderer_works_again_after_stopping_a_render(templates: Path) -> None:
    renderer = Renderer(templates)
    (templates / "zh-CN" / "due_day.voice.j2").write_text(HOSTILE["nested loops"][0])
    with pytest.raises(TemplateError):
        renderer.render("due_day", "voice", "zh-CN", context())
    time.sleep(0.2)  # a stray stop must not land in what runs next
    assert "2026-0042" in renderer.render("due_day", "sms", "zh-CN", context(opt_out="回复TD退订")).text


@pytest.mark.parametrize("command", ["preview", "check"])
def test_preview_and_check_stop_it_without_a_traceback(templates: Path, tmp_path: Path, command: str) -> None:
    (templates / "zh-CN" / "due_day.sms.j2").write_text("x\n" + HOSTILE["nested loops"][0] + "\n")
    job = tmp_path / "job.json"
    job.write_text(json.dumps(SAMPLE, ensure_ascii=False), encoding="utf-8")
    args = (["templates", "preview", "due_day", "--job", str(job), "--channel", "sms"] if command == "preview"
            else ["templates", "check"]) + ["--dir", str(templates)]
    started = time.monotonic()
    result = dunning(*args)
    assert result.returncode == 1
    assert "zh-CN/due_day.sms.j2:2: rendering took longer than" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert time.monotonic() - started < 60


ESCAPES = {
    "include up": '{% include "../../../../../../../../etc/passwd" %}',
    "include absolute": '{% include "/etc/passwd" %}',
    "extends up": '{% extends "../../../../../../../../etc/hostname" %}',
    "include a dot segment": '{% include "./../../../../../../../etc/passwd" %}',
    "include a backslash": '{% include "..\\\\..\\\\etc\\\\passwd" %}',
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_a_template_cannot_read_files_outside_the_templates(templates: Path, name: str) -> None:
    """`{% include %}` and `{% extends %}` name templates, never the host's files: refused
    with the template's name and line, from a folder and from the log's versions alike."""
    from worker.messages.sources import Fixed, TemplateSource
    body = "【{{ sender.name }}】\n" + ESCAPES[name] + "\n{{ opt_out }}\n"
    (templates / "zh-CN" / "due_day.sms.j2").write_text(body)
    fixed = Fixed([TemplateSource.of(str(p.relative_to(templates)), p.read_text())
                   for p in templates.rglob("*.j2")])
    for source in (templates, fixed):
        with pytest.raises(TemplateError) as stopped:
            Renderer(source).render("due_day", "sms", "zh-CN", context(opt_out="回复TD退订"))
        assert "root:" not in str(stopped.value)
        assert str(stopped.value).startswith("zh-CN/due_day.sms.j2:2:"), str(stopped.value)
        assert "is not allowed" in str(stopped.value) or "no such template" in str(stopped.value)


def test_a_link_out_of_the_folder_is_refused(templates: Path, tmp_path: Path) -> None:
    """A symlink inside the folder that points outside is neither listed nor read."""
    (tmp_path / "secret.j2").write_text("s3cret")
    (templates / "zh-CN" / "leak.j2").symlink_to(tmp_path / "secret.j2")
    (templates / "zh-CN" / "due_day.sms.j2").write_text('【x】\n{% include "zh-CN/leak.j2" %}\n{{ opt_out }}\n')
    renderer = Renderer(templates)
    assert "zh-CN/leak.j2" not in renderer.templates.names()
    with pytest.raises(TemplateError) as stopped:
        renderer.render("due_day", "sms", "zh-CN", context(opt_out="回复TD退订"))
    assert "s3cret" not in str(stopped.value) and "is not allowed" in str(stopped.value)
