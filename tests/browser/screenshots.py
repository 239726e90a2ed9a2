"""The README's pictures of the console, taken by the tests' browser (Debian's Chromium,
driven by Playwright) from the demo's log: `make screenshots`.

Runs `dunning demo` in a scratch folder, adds a compliance reader to its log, serves
the console on loopback, and saves the timeline of the invoice with the most events,
the page of its first message and the Records page to docs/. Then the operator's pages
(the template editor, the Schedule, the Escalations, a simulation) from the demo's
first moment kept running — its worker, Redis and agenda — since the demo stops all it
started."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from worker import wiring  # noqa: E402
from worker.contact_log import ContactLog  # noqa: E402
from worker.db.schema import events  # noqa: E402
from worker.http.app import create_app  # noqa: E402
from worker.local.ports import free_port  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.users.people import People  # noqa: E402

PASSWORD = "a reader of the demo's log"


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="dunning-shots-"))
    subprocess.run([str(Path(sys.executable).parent / "dunning"), "demo"], cwd=scratch, check=True,
                   stdout=subprocess.DEVNULL)
    log = ContactLog.open(f"sqlite:///{scratch / 'var/demo/dunning.db'}",
                           base64.b64decode((scratch / "var/demo/master.key").read_text())).migrate()
    People(log).add_user("demo.reader", "compliance", PASSWORD, datetime.now(UTC), by="screenshots")
    with log.engine.connect() as conn:
        invoice = conn.execute(select(events.c.invoice_id).where(events.c.invoice_id.is_not(None))
                               .group_by(events.c.invoice_id).order_by(func.count().desc()).limit(1)).scalar_one()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings.from_env({"DUNNING_SECRET_KEY": "screenshots-" + "k" * 32, "DUNNING_PUBLIC_URL": url})
    app = create_app(log, wiring.books(log), wiring.Links(settings), settings, lambda: datetime.now(UTC))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    docs = ROOT / "docs"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(f"{url}/console/")
        page.get_by_label("Username").fill("demo.reader")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{url}/console/invoices/{invoice}")
        page.screenshot(path=docs / "console-timeline.png", full_page=True)
        page.get_by_role("link", name="View message").first.click()
        page.screenshot(path=docs / "console-message.png", full_page=True)
        page.goto(f"{url}/console/records")
        page.get_by_label("Account or invoice to hold").fill(invoice)
        page.get_by_label("Reason for the hold").fill("dispute in court, case 2026-114")
        page.get_by_role("button", name="Place hold").click()
        page.get_by_label("As of (YYYY-MM-DD)").fill("2033-01-01")
        page.get_by_role("button", name="Preview purge").click()
        page.screenshot(path=docs / "console-records.png", full_page=True)
        browser.close()
    server.should_exit = True
    operators(scratch / "operators", docs)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"docs/console-timeline.png, console-message.png and console-records.png: invoice {invoice} of the "
          "demo's log; console-template.png, console-schedule.png, console-escalations.png, "
          "console-simulation.png: the demo's first moment")


def operators(scratch: Path, docs: Path) -> None:
    """The demo's samples queued at its start, the worker run until idle; the console on the same log and Redis."""
    from worker import policy, wiring
    from worker.jobs.intake import submit
    from worker.jobs.parse import read_jobs
    from worker.jobs.samples import sample_bytes
    from worker.local.stack import Stack

    start = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
    stack = Stack(scratch).start()
    try:
        env = stack.env()
        settings = Settings.from_env(env)
        log = wiring.log(settings, migrate=True)
        stack.set_clock(start)
        known = policy.profiles(settings.profile_dir)
        submit(read_jobs(sample_bytes(), known), wiring.books(log).jobs, known, stack.broker, start)
        stack.start_worker(processes=1, threads=8)
        stack.wait_idle(timeout=120)
        for name in ("ops.wang", "ops.zhao"):
            People(log).add_user(name, "operator", PASSWORD, start, by="screenshots")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        served = Settings.from_env({**env, "DUNNING_PUBLIC_URL": url})
        app = create_app(log, wiring.books(log), wiring.Links(served), served, stack.clock.now)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1360, "height": 900})

            def sign_in(name: str) -> None:
                page.goto(f"{url}/console/sign-in")
                page.get_by_label("Username").fill(name)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()

            sign_in("ops.wang")
            editor = f"{url}/console/templates/edit/en-US/due_day.sms.j2"
            page.goto(editor)
            source = page.get_by_label("Template source")
            source.fill(source.input_value().replace("is due today.", "is due today, {{ invoice.due_date|date }}."))
            page.get_by_role("button", name="Publish").click()
            page.get_by_role("button", name="Sign out").click()
            sign_in("ops.zhao")
            page.goto(editor)
            page.get_by_role("button", name="Approve").click()
            page.get_by_role("button", name="Check").click()
            page.get_by_text(re.compile("^Diff of #")).first.click()
            page.screenshot(path=docs / "console-template.png", full_page=True)
            waiting = [payload["job"]["invoice"]["id"] for _, _, payload in stack.agenda.upcoming(
                start + timedelta(days=14)) if "job" in payload]
            page.goto(f"{url}/console/schedule?target={waiting[0] if waiting else ''}")
            page.screenshot(path=docs / "console-schedule.png", full_page=True)
            page.goto(f"{url}/console/escalations")
            page.screenshot(path=docs / "console-escalations.png", full_page=True)
            page.goto(f"{url}/console/simulate")
            page.get_by_label("Start (YYYY-MM-DD)").fill("2026-12-01")
            page.get_by_label("Days").fill("30")
            page.get_by_role("button", name="Run simulation").click()
            page.get_by_text("Done:").wait_for(timeout=120_000)
            page.screenshot(path=docs / "console-simulation.png", full_page=False)
            browser.close()
        server.should_exit = True
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
