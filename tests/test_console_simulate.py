"""The operator's Simulate page over real HTTP: `dunning simulate` runs in the
background (a child process) on the bundled or an uploaded portfolio, with a draft
template of the operator's choosing; progress, the day-by-day table, the chart and the
CSV; bad input named; runs are their owner's."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from harness import serving
from test_console import ENV, PASSWORD, Browser

from worker.contact_log import ContactLog
from worker.jobs.samples import FOLDER
from worker.messages.library import Library
from worker.users.people import People

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


@pytest.fixture()
def console(log: ContactLog) -> Iterator[str]:
    for name in ("wang.fang", "zhao.lei"):
        People(log).add_user(name, "operator", PASSWORD, NOW, by="test")
    with serving(log, ENV, lambda: NOW) as url:
        yield url


def finished(person: Browser, location: str) -> requests.Response:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        page = person.get(location)
        if "Running: day" not in page.text:
            return page
        assert '<meta http-equiv="refresh"' in page.text and "<progress" in page.text
        time.sleep(0.5)
    raise AssertionError("the simulation did not finish in 120 s")


def start(person: Browser, files: dict[str, object] | None = None, **form: str) -> requests.Response:
    data = {"source": "bundled", "start": "2026-12-01", "days": "10", "pay_rate": "0",
            "profiles": "shipped profiles only", **form, "csrf": person.csrf("/console/simulate")}
    return person.http.post(person.url + "/console/simulate", data=data, files=files, allow_redirects=False,
                            timeout=30)


@pytest.mark.parametrize("log", ["sqlite"], indirect=True)  # the run has its own database either way
def test_a_simulation_runs_in_the_background_with_a_draft_and_exports_its_csv(console: str, log: ContactLog) -> None:
    person = Browser(console)
    person.sign_in("wang.fang")
    assert person.get("/console/templates/edit/zh-CN/pre_due_7.email.j2").status_code == 200  # imports templates
    name = "zh-CN/pre_due_7.email.j2"
    source = Library(log).live_templates()[name].replace("{% block subject %}", "{% block subject %}【草稿】")
    draft = Library(log).save_template(name, source, "wang.fang", NOW)
    form = person.get("/console/simulate").text
    assert f"{name} #{draft.id}" in form
    began = start(person, draft=str(draft.id))
    assert began.status_code == 303
    location = began.headers["location"]
    page = finished(person, location)
    assert "Done:" in page.text and f"drafts #{draft.id} {name}" in page.text
    assert '<svg role="img"' in page.text and 'class="bar' in page.text
    assert re.search(r"2026-12-01 Tue</th>(<td>\d*</td>)+", page.text)
    exported = person.get(location + "/csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert any(r["action"] == "sent" and r["stage"] == "pre_due_7" for r in rows)
    assert all("*" in r["debtor"] for r in rows), "names masked"
    # Another operator does not see it.
    other = Browser(console)
    other.sign_in("zhao.lei")
    assert other.get(location).status_code == 404 and other.get(location + "/csv").status_code == 404


@pytest.mark.parametrize("log", ["sqlite"], indirect=True)
def test_an_uploaded_portfolio_is_simulated_and_bad_input_is_named(console: str) -> None:
    person = Browser(console)
    person.sign_in("wang.fang")
    first = FOLDER.joinpath("portfolio.jsonl").read_text(encoding="utf-8").splitlines()[0]
    job = json.loads(first)
    uploaded = start(person, files={"portfolio": ("mine.jsonl", first + "\n{broken\n", "application/x-ndjson")},
                     source="upload", days="3")
    assert uploaded.status_code == 303
    page = finished(person, uploaded.headers["location"])
    assert "uploaded mine.jsonl" in page.text and "some jobs were rejected" in page.text
    assert job["invoice"]["id"] in page.text
    assert start(person, days="999").status_code == 422
    assert "a whole number from 1 to 120 expected" in start(person, days="999").text
    assert start(person, start="tomorrow").status_code == 422
    assert start(person, profiles="/etc").status_code == 422
    assert start(person, source="upload").status_code == 422
