"""Rendering from the contact log's published templates against rendering from a folder
(how the worker rendered before the log held them), in the same run.

    .venv/bin/python bench/templates.py [--renders 20000]

Both render the same message (zh-CN due_day email: subject, text and HTML) through
`compose`, as the worker does; the log is a SQLite file with the shipped templates
imported. The published set is asked for its generation at most once a second, so a
render costs a dictionary lookup where the folder costs a stat of each file. Prints
microseconds per message for each and their ratio (goal: the log no slower than the
folder, ratio ≥ 0.95), best of five rounds each, alternating.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.clock import SystemClock  # noqa: E402
from worker.contact_log import ContactLog  # noqa: E402
from worker.jobs.samples import sample_jobs  # noqa: E402
from worker.messages.context import compose  # noqa: E402
from worker.messages.library import Library  # noqa: E402
from worker.messages.render import Renderer  # noqa: E402
from worker.settings import SHIPPED_DIR, Sender, Settings  # noqa: E402


def per_message(renderer: Renderer, renders: int) -> float:
    job = next(j for j in sample_jobs() if j.debtor.locale == "zh-CN")
    today = date(2026, 12, 2)
    started = time.perf_counter()
    for _ in range(renders):
        compose(renderer, job, "due_day", "email", today, Sender(), "https://example.com/u/x")
    return (time.perf_counter() - started) / renders * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renders", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dunning-bench-templates-") as scratch:
        log = ContactLog.open(f"sqlite:///{scratch}/dunning.db").migrate()
        Library(log).import_folder(Settings().template_dir, SystemClock().now())
        published, folder = Renderer(Library(log).published()), Renderer(Path(SHIPPED_DIR))
        for renderer in (published, folder):
            per_message(renderer, 200)  # compiled and cached
        rounds: dict[str, list[float]] = {"log": [], "folder": []}
        for _ in range(5):
            rounds["log"].append(per_message(published, args.renders))
            rounds["folder"].append(per_message(folder, args.renders))
        log.engine.dispose()
    best = {name: min(found) for name, found in rounds.items()}
    print(f"published in the log: {best['log']:.1f} µs per message; from the folder: {best['folder']:.1f} µs")
    print(f"ratio (folder / log, ≥ 0.95 wanted): {best['folder'] / best['log']:.2f}")


if __name__ == "__main__":
    main()
