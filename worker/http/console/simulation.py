"""The operator's Simulate page: `dunning simulate` run in the background on an uploaded
portfolio (JSON Lines) or the bundled one, with a profile folder and draft templates of
the operator's choosing, its progress followed, then the day-by-day result as a table,
a chart of sends per day by channel, and the CSV — so a change is seen before it is
published.

The simulation is the command itself, in a child process (`python -m worker.cli
simulate --progress --csv`): the same code as on the command line, with its own Redis,
database and sandbox channels, so it can reach no provider and the server stays pure of
`worker.local`. Runs are kept in this process's memory (the last few per server) and
shown only to the person who started them.
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from schedules.spec import CHANNELS
from worker.http.console.charts import sends_per_day
from worker.http.console.guard import Guard
from worker.http.console.pages import HEADERS, page
from worker.jobs.samples import FOLDER as SAMPLES
from worker.messages.library import Library, VersionState
from worker.settings import Settings
from worker.users.people import Session

MAX_UPLOAD = 5_000_000  # bytes of JSON Lines: some ten thousand jobs
MAX_DAYS = 120
KEPT = 20  # runs remembered per server
TIMEOUT_S = 900
ACTIONS = ("sent", "failed", "unknown", "defer", "skip", "escalated", "paid")


@dataclass
class Run:
    id: str
    owner: str
    started: datetime
    what: str  # the portfolio, the dates, the profiles, the drafts: in words
    start: date
    days: int
    folder: Path
    status: str = "running"  # running, done, failed
    day: int = 0
    problem: str | None = None
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def csv(self) -> Path:
        return self.folder / "simulation.csv"


def profile_folders(settings: Settings) -> dict[str, Path | None]:
    """The profile folders an operator may choose: the shipped profiles alone, the
    configured `DUNNING_PROFILE_DIR`, and folders of profiles beside it (a draft folder)."""
    found: dict[str, Path | None] = {"shipped profiles only": None}
    if settings.profile_dir is not None and settings.profile_dir.is_dir():
        found[str(settings.profile_dir)] = settings.profile_dir
        for sibling in sorted(settings.profile_dir.parent.iterdir()):
            if sibling.is_dir() and sibling != settings.profile_dir and any(sibling.glob("*.toml")):
                found[str(sibling)] = sibling
    return found


def summarise(rows: list[dict[str, str]], start: date, days: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per day: each action's count, sends by channel; and the chart of sends."""
    per_day: dict[date, Counter[str]] = {}
    sends: dict[date, Counter[str]] = {}
    for row in rows:
        day = date.fromisoformat(row["day"])
        per_day.setdefault(day, Counter())[row["action"]] += 1
        if row["action"] == "sent":
            sends.setdefault(day, Counter())[row["channel"]] += 1
    first = min([start, *per_day])
    last = max([first, *per_day])
    span = [date.fromordinal(d) for d in range(first.toordinal(), last.toordinal() + 1)]
    table = [{"day": d, "actions": per_day.get(d, Counter()), "sends": sends.get(d, Counter())} for d in span]
    return table, sends_per_day({d: sends.get(d, Counter()) for d in span})


def execute(run: Run, start: date, pay_rate: float, profiles: Path | None, templates: Path) -> None:
    """Run `dunning simulate` for `run` in a child process (its own database, its own
    clock), following its progress; the run says how it ended."""
    env = {**os.environ, "DUNNING_TEMPLATE_DIR": str(templates)}
    env.pop("DUNNING_PROFILE_DIR", None)
    if profiles is not None:
        env["DUNNING_PROFILE_DIR"] = str(profiles)
    command = [sys.executable, "-m", "worker.cli", "simulate", str(run.folder / "portfolio.jsonl"),
               "--start", start.isoformat(), "--days", str(run.days), "--pay-rate", str(pay_rate),
               "--csv", str(run.csv), "--progress"]
    said: list[str] = []
    try:
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 cwd=run.folder)
        timer = threading.Timer(TIMEOUT_S, child.kill)
        timer.start()
        assert child.stderr is not None
        for line in child.stderr:
            if line.startswith("progress: "):
                run.day = int(line.split()[1].split("/")[0])
            elif line.strip():
                said.append(line.rstrip())
        code = child.wait()
        timer.cancel()
    except OSError as error:
        run.status, run.problem = "failed", f"the simulation could not start ({error.strerror})"
        return
    if run.csv.is_file():
        with run.csv.open(encoding="utf-8", newline="") as stream:
            run.rows = list(csv.DictReader(stream))
    if code in (0, 1) and run.csv.is_file():
        run.status = "done"
        run.problem = ("some jobs were rejected: " + " ".join(said[-5:])[:1000]) if code == 1 else None
    else:
        run.status = "failed"
        run.problem = " ".join(said[-5:])[:1000] or f"the simulation stopped (exit {code})"


class Asked(ValueError):
    """A field of the form is not what was expected: the status, and the words for the page."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status = status


def _asked(form: FormData, folders: dict[str, Path | None]) -> tuple[date, int, float, str]:
    """The start, the days, the chance of payment and the profiles' folder asked for."""
    try:
        start = date.fromisoformat(str(form.get("start") or ""))
    except ValueError:
        raise Asked(422, f"Start: {form.get('start')!r} is not a date (YYYY-MM-DD)") from None
    days_text, rate_text = str(form.get("days") or ""), str(form.get("pay_rate") or "0")
    if not days_text.isdigit() or not 1 <= int(days_text) <= MAX_DAYS:
        raise Asked(422, f"Days: {days_text!r}; a whole number from 1 to {MAX_DAYS} expected")
    try:
        pay_rate = float(rate_text)
        if not 0 <= pay_rate <= 1:
            raise ValueError
    except ValueError:
        raise Asked(422, f"Chance of payment per day: {rate_text!r}; a number from 0 to 1 expected") from None
    chosen = str(form.get("profiles") or "shipped profiles only")
    if chosen not in folders:
        raise Asked(422, f"Profiles: {chosen!r} is not one of the folders offered")
    return start, int(days_text), pay_rate, chosen


async def _portfolio(form: FormData) -> tuple[bytes, str]:
    """The portfolio to run (uploaded, or the bundled one) and how to name it."""
    if str(form.get("source") or "bundled") != "upload":
        return SAMPLES.joinpath("portfolio.jsonl").read_bytes(), "the bundled portfolio"
    upload = form.get("portfolio")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise Asked(422, "Portfolio: choose a JSON Lines file to upload, or the bundled one")
    portfolio = await upload.read(MAX_UPLOAD + 1)
    if len(portfolio) > MAX_UPLOAD:
        raise Asked(413, f"Portfolio: larger than {MAX_UPLOAD // 1_000_000} MB")
    return portfolio, f"uploaded {upload.filename}"


class Simulations:
    """The operator's simulations: the form, the runs (kept while the server runs, each
    person's own), a run's page and its CSV."""

    def __init__(self, library: Library, settings: Settings, now: Callable[[], datetime]) -> None:
        self.library, self.settings, self.now = library, settings, now
        self.runs: dict[str, Run] = {}
        self.lock = threading.Lock()

    def drafts(self) -> list[Any]:
        """The newest draft or waiting version of each template (what an operator may try)."""
        newest: dict[str, Any] = {}
        for version in self.library.template_versions():
            if version.state in (VersionState.DRAFT, VersionState.PENDING) and version.name not in newest:
                newest[version.name] = version
        return sorted(newest.values(), key=lambda v: v.name)

    def form_page(self, session: Session, status: int = 200, problem: str | None = None) -> Response:
        mine = sorted((r for r in self.runs.values() if r.owner == session.user.name), key=lambda r: r.started,
                      reverse=True)
        return page("simulate.html", status, user=session.user, csrf=session.csrf, problem=problem,
                    folders=profile_folders(self.settings), drafts=self.drafts(), runs=mine,
                    today=self.now().date(), max_days=MAX_DAYS)

    async def form_view(self, request: Request, session: Session) -> Response:
        return self.form_page(session)

    async def start(self, request: Request, session: Session) -> Response:
        form = await request.form()  # files are spooled; the size is checked as it is read
        folders = profile_folders(self.settings)
        try:
            start, days, pay_rate, chosen = _asked(form, folders)
            portfolio, named = await _portfolio(form)
        except Asked as asked:
            return self.form_page(session, asked.status, str(asked))
        wanted = {int(str(v)) for v in form.getlist("draft") if str(v).isdigit()}
        trying = [v for v in self.drafts() if v.id in wanted]
        run = Run(secrets.token_urlsafe(9), session.user.name, self.now(),
                  f"{named}, {days} days from {start}, {chosen}"
                  + (f", drafts {', '.join(f'#{v.id} {v.name}' for v in trying)}" if trying else ""),
                  start, days, Path(tempfile.mkdtemp(prefix="dunning-console-simulate-")))
        (run.folder / "portfolio.jsonl").write_bytes(portfolio)
        templates = run.folder / "templates"
        live = self.library.live_or_imported(self.settings.template_dir, self.now())
        for name, source in {**live, **{v.name: v.source for v in trying}}.items():
            (templates / name).parent.mkdir(parents=True, exist_ok=True)
            (templates / name).write_text(source, encoding="utf-8")
        self._keep(run)
        threading.Thread(target=execute, args=(run, start, pay_rate, folders[chosen], templates),
                         name=f"simulate-{run.id}", daemon=True).start()
        return RedirectResponse(f"/console/simulate/{run.id}", status_code=303, headers=HEADERS)

    def _keep(self, run: Run) -> None:
        """Keep `run`, forgetting the oldest finished runs beyond `KEPT` (and their files)."""
        with self.lock:
            for old in sorted(self.runs.values(), key=lambda r: r.started)[:max(0, len(self.runs) - KEPT + 1)]:
                if old.status != "running":
                    shutil.rmtree(old.folder, ignore_errors=True)
                    self.runs.pop(old.id, None)
            self.runs[run.id] = run

    def mine(self, request: Request, session: Session) -> Run | None:
        found = self.runs.get(request.path_params["run"])
        return found if found is not None and found.owner == session.user.name else None

    async def view(self, request: Request, session: Session) -> Response:
        run = self.mine(request, session)
        if run is None:
            return page("error.html", 404, user=session.user, csrf=session.csrf, title="No such simulation",
                        message="No simulation of yours has this number (they are kept while the server runs).")
        table, chart = summarise(run.rows, run.start, run.days) if run.status == "done" else ([], None)
        return page("simulation.html", user=session.user, csrf=session.csrf, run=run, table=table, chart=chart,
                    actions=ACTIONS, channels=CHANNELS, rows=run.rows[:500], refresh=run.status == "running")

    async def csv_file(self, request: Request, session: Session) -> Response:
        run = self.mine(request, session)
        if run is None or run.status != "done":
            return page("error.html", 404, user=session.user, csrf=session.csrf, title="No such simulation",
                        message="No finished simulation of yours has this number.")
        return Response(run.csv.read_bytes(), media_type="text/csv; charset=utf-8", headers={
            **HEADERS, "content-disposition": f'attachment; filename="dunning-simulation-{run.id}.csv"'})


def add(routes: APIRouter, guard: Guard, library: Library, settings: Settings, now: Callable[[], datetime]) -> None:
    pages, operator = Simulations(library, settings, now), guard("operator")
    routes.get("/simulate")(operator(pages.form_view))
    routes.post("/simulate")(operator(pages.start))
    routes.get("/simulate/{run:str}")(operator(pages.view))
    routes.get("/simulate/{run:str}/csv")(operator(pages.csv_file))
