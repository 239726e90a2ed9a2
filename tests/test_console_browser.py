"""The console in real headless Chromium (Debian's `chromium`, driven by Playwright),
over a log the real worker wrote: a compliance reader signs in, searches, reads a
timeline with a send and a suppression, opens the message, exports, verifies; is
refused the admin's pages; a forged CSRF token is refused; markup in a debtor's name
and in who reported a payment is shown as text (no dialog fires); every page passes
axe-core with no serious or critical violation; the access trail is in the chain."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import WEDNESDAY_10, Harness, serving
from playwright.sync_api import Browser, Page, expect, sync_playwright

from worker.events import Events
from worker.jobs.book import JobBook, JobRow
from worker.messages.library import Library
from worker.users.keys import Keys
from worker.users.people import People

PASSWORD = "correct horse battery"
AXE = Path(__file__).parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
EVIL = '<img src=x onerror="alert(1)">Zhang'


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None or not AXE.is_file():
        pytest.fail("Chromium and axe-core are needed: `make system` installs chromium, `make test` axe-core")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def accessible(page: Page) -> None:
    """axe-core on the page as it stands: no serious or critical violation."""
    page.evaluate(AXE.read_text(encoding="utf-8"))  # DevTools evaluation: the page's CSP still holds for the page
    found: dict[str, Any] = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in found["violations"]
               if v["impact"] in ("serious", "critical")]
    assert not serious, f"{page.url}: {serious}"


def sign_in(page: Page, url: str, name: str) -> None:
    page.goto(f"{url}/console/")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_compliance_reads_a_debtors_record_in_the_browser(harness: Harness, chromium: Browser,
                                                           tmp_path: Path) -> None:
    sent = harness.job("2026-12-08", debtor__name=EVIL)
    paid = harness.job("2026-12-08")
    harness.stack.set_clock(WEDNESDAY_10)
    # Billing sent the invoice's job (recorded, not yet queued), then its payment came in.
    JobBook(harness.log).take_jobs([JobRow(paid["job_id"], paid["invoice"]["id"], paid["debtor"]["account_id"],
                                  json.dumps(paid))], WEDNESDAY_10 - timedelta(hours=2))
    Events(harness.log, harness.stack.agenda).paid(paid["invoice"]["id"], WEDNESDAY_10 - timedelta(hours=1),
                                                   by="billing:<b>erp</b>")
    harness.run(sent, paid)
    People(harness.log).add_user("li.na", "compliance", PASSWORD, WEDNESDAY_10, by="test")
    env = {**harness.stack.env(), **harness.worker_env}
    with serving(harness.log, env, harness.stack.clock.now) as url:
        context = chromium.new_context(accept_downloads=True)
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        sign_in(page, url, "li.na")
        expect(page.get_by_role("heading", name="Search")).to_be_visible()
        accessible(page)

        page.get_by_label("Search").fill(sent["debtor"]["email"].upper())
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name=sent["invoice"]["id"]).click()
        expect(page.get_by_role("heading", name=f"Invoice {sent['invoice']['id']}")).to_be_visible()
        expect(page.get_by_role("cell", name="sent", exact=True)).to_be_visible()
        lines = page.evaluate("Math.max(...[...document.querySelectorAll('td.when')].map(td => {"
                              "const r = document.createRange(); r.selectNodeContents(td);"
                              "return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }))")
        assert lines == 1, f"times stay on one line ({lines} lines)"
        accessible(page)

        page.get_by_role("link", name="View message").click()
        expect(page.get_by_text("identical to what was sent")).to_be_visible()
        frame = page.frame_locator("iframe[title]")
        expect(frame.locator("body")).to_contain_text(sent["invoice"]["number"])
        expect(frame.locator("body")).to_contain_text('<img src=x onerror="alert(1)">')  # the name, as text
        styled = frame.locator("body").evaluate("body => getComputedStyle(body).maxWidth")
        assert styled == "640px", "the email's own styles apply: shown as sent"
        expect(page.locator("pre")).to_contain_text('<img src=x onerror="alert(1)">')
        accessible(page)

        page.goto(f"{url}/console/search?q={paid['invoice']['id']}")
        page.get_by_role("link", name=paid["invoice"]["id"]).click()
        expect(page.get_by_text("not sent").first).to_be_visible()
        expect(page.get_by_role("cell", name="billing:<b>erp</b>")).to_be_visible()  # as text
        with page.expect_download() as download:
            page.get_by_role("link", name="Export CSV").click()
        exported = Path(download.value.path()).read_text(encoding="utf-8")
        assert "skip" in exported and "S-PAID" in exported and paid["debtor"]["email"] not in exported

        page.get_by_role("link", name="Records").click()
        accessible(page)
        page.get_by_label("Account or invoice to hold").fill(sent["invoice"]["id"])
        page.get_by_label("Reason for the hold").fill("litigation <i>2026-9</i>")
        page.get_by_role("button", name="Place hold").click()
        expect(page.get_by_role("cell", name="litigation <i>2026-9</i>")).to_be_visible()  # as text
        page.get_by_label("Account to erase").fill(sent["debtor"]["account_id"])
        page.get_by_label("Reason for the erasure (the request's reference)").fill("GDPR request 12")
        page.get_by_role("button", name="Erase for good").click()
        assert page.get_by_role("alert").count() == 0, "the browser asks for the confirmation first"
        page.get_by_label(re.compile("I understand")).check()
        page.get_by_role("button", name="Erase for good").click()
        expect(page.get_by_role("alert")).to_contain_text("not erased")
        expect(page.get_by_role("alert")).to_contain_text("on legal hold")
        page.get_by_role("button", name=f"Release {sent['invoice']['id']}").click()
        expect(page.get_by_role("status")).to_contain_text("legal hold released")
        page.get_by_label("As of (YYYY-MM-DD)").fill("2036-01-01")
        page.get_by_role("button", name="Preview purge").click()
        due = page.get_by_role("table", name=re.compile("would erase as of 2036-01-01"))
        expect(due.get_by_role("cell", name=sent["debtor"]["account_id"])).to_be_visible()
        accessible(page)
        page.get_by_label("Account, email or phone number").fill(sent["debtor"]["email"])
        with page.expect_download() as download:
            page.get_by_role("button", name="Export records").click()
        report = Path(download.value.path()).read_text(encoding="utf-8")
        assert sent["invoice"]["number"] in report and "<script" not in report

        page.get_by_role("link", name="Verify").click()
        accessible(page)
        page.get_by_role("button", name="Verify").click()
        expect(page.get_by_text("Intact")).to_be_visible(timeout=20_000)

        page.goto(f"{url}/console/people")
        expect(page.get_by_role("heading", name="Not for your role")).to_be_visible()
        page.goto(f"{url}/console/verify")
        page.evaluate("document.querySelector('form[action=\"/console/verify\"] input[name=csrf]').value = 'forged'")
        page.get_by_role("button", name="Verify").click()
        expect(page.get_by_role("heading", name="Form expired")).to_be_visible()
        context.close()
    assert dialogs == [], "markup ran as script"
    trail = {r["status"] for r in harness.log.history() if r["kind"] == "access"}
    assert {"signed-in", "viewed", "exported", "verified"} <= trail
    assert [(r["kind"], r["status"]) for r in harness.log.history() if r["kind"] in ("hold", "erasure")] == [
        ("hold", "placed"), ("erasure", "refused"), ("hold", "released")]
    assert harness.log.verify().intact


def test_an_admin_manages_people_and_keys_in_the_browser(harness: Harness, chromium: Browser) -> None:
    People(harness.log).add_user("root.admin", "admin", PASSWORD, WEDNESDAY_10, by="test")
    harness.stack.set_clock(WEDNESDAY_10)  # the shared clock: this test may run first
    env = {**harness.stack.env(), **harness.worker_env}
    with serving(harness.log, env, harness.stack.clock.now) as url:
        page = chromium.new_page()
        sign_in(page, url, "root.admin")
        expect(page.get_by_role("heading", name="People")).to_be_visible()
        accessible(page)
        page.get_by_label("Name").fill("zhao.lei")
        page.get_by_label("Role").select_option("operator")
        page.get_by_label("Password (at least 12 characters)").fill("another long passphrase")
        page.get_by_role("button", name="Add").click()
        expect(page.get_by_role("status")).to_contain_text("zhao.lei added (operator).")
        page.get_by_role("button", name="Disable zhao.lei").click()
        expect(page.get_by_role("status")).to_contain_text("zhao.lei disabled")
        page.get_by_role("link", name="API keys").click()
        accessible(page)
        page.get_by_label("Name").fill("erp-test")
        page.get_by_role("button", name="Make key").click()
        key = page.get_by_label("New key").inner_text()
        assert key.startswith("dk_") and Keys(harness.log).authenticate(key, WEDNESDAY_10) is not None
        page.get_by_role("button", name="Revoke erp-test").click()
        expect(page.get_by_role("status")).to_contain_text("erp-test revoked")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        accessible(page)
        page.close()


def test_operators_edit_check_publish_and_approve_a_template_the_worker_then_sends(
        harness: Harness, chromium: Browser) -> None:
    import hashlib
    import time

    for name in ("sun.li", "zhou.mei"):
        People(harness.log).add_user(name, "operator", PASSWORD, WEDNESDAY_10, by="test")
    harness.stack.set_clock(WEDNESDAY_10)
    name = "zh-CN/due_day.sms.j2"
    wording = "【{{ sender.name }}】新措辞：发票{{ invoice.number }}今日到期。{% if opt_out %}{{ opt_out }}{% endif %}"
    env = {**harness.stack.env(), **harness.worker_env}
    with serving(harness.log, env, harness.stack.clock.now) as url:
        page = chromium.new_page()
        sign_in(page, url, "sun.li")
        page.get_by_role("link", name="Templates").click()
        expect(page.get_by_role("heading", name="Templates")).to_be_visible()
        accessible(page)
        page.goto(f"{url}/console/templates/edit/zh-CN/due_day.email.j2")  # an email's preview, styled
        email = page.frame_locator("iframe[title]").locator("body")
        expect(email).to_contain_text("2026-")
        assert email.evaluate("body => getComputedStyle(body).maxWidth") == "640px"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "long links wrap"
        page.goto(f"{url}/console/templates")
        page.get_by_role("link", name=f"Edit {name}").click()
        source = page.get_by_label("Template source")
        expect(source).to_have_value(re.compile("invoice.number"))
        accessible(page)
        source.fill(wording)  # the preview follows the typing (the editor's script), no button pressed
        expect(page.get_by_test_id("text")).to_contain_text("新措辞")
        expect(page.get_by_test_id("segments")).to_contain_text("UCS-2")
        page.get_by_label("Amount").fill("88.00")  # the sample debtor changes the preview too
        expect(page.get_by_test_id("text")).to_contain_text("新措辞")
        source.fill(wording.replace("今日到期", "今日到期，否则通知公安"))
        page.get_by_role("button", name="Check").click()
        expect(page.get_by_text("forbidden phrase '公安'")).to_be_visible()
        page.get_by_role("button", name="Publish").click()
        expect(page.get_by_role("alert")).to_contain_text("fails its checks")
        page.get_by_label("Template source").fill(wording)
        page.get_by_role("button", name="Save draft").click()
        expect(page.get_by_role("status")).to_contain_text("Saved as draft")
        page.get_by_role("button", name="Publish").click()
        expect(page.get_by_role("status")).to_contain_text("waits for another operator's approval")
        accessible(page)
        page.get_by_role("button", name="Sign out").click()

        sign_in(page, url, "zhou.mei")
        page.goto(f"{url}/console/templates/edit/{name}")
        expect(page.get_by_role("heading", name="Waiting for approval")).to_be_visible()
        page.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("status")).to_contain_text("is live")
        page.get_by_text(re.compile(r"^Diff of #")).first.click()
        expect(page.locator("pre.diff").first).to_contain_text("新措辞")

        time.sleep(1.2)  # a worker asks for new versions at most once a second
        job = harness.job("2026-12-02", debtor__phone="+8613900139123")
        harness.run(job)
        [text] = harness.texts_to("+8613900139123", job["invoice"]["number"])
        assert "新措辞" in text["body"]
        [claimed] = [r for r in harness.log.history(job=job["job_id"]) if r["status"] == "claimed"]
        assert claimed["template"] == name
        assert claimed["template_version"] == hashlib.sha256(wording.encode()).hexdigest()

        page.goto(f"{url}/console/templates/edit/{name}")
        versions = Library(harness.log).template_versions(name)
        assert [v.state for v in versions] == ["live", "draft", "retired"], "the draft saved is the one published"
        retired = versions[2]
        page.get_by_role("button", name=f"Roll back to #{retired.id}").click()
        expect(page.get_by_role("status")).to_contain_text("waits for another operator's approval")
        assert Library(harness.log).template_versions(name)[0].note == f"rolled back to #{retired.id}"
        page.close()


def test_operators_see_the_schedule_close_a_case_and_simulate_in_the_browser(
        harness: Harness, chromium: Browser) -> None:
    People(harness.log).add_user("ops.he", "operator", PASSWORD, WEDNESDAY_10, by="test")
    People(harness.log).add_user("reader.qin", "compliance", PASSWORD, WEDNESDAY_10, by="test")
    import json

    from worker.jobs.samples import sample_bytes

    demo = [json.loads(line) for line in sample_bytes().splitlines() if line.strip()]  # what `make demo` queues
    planned = harness.job("2026-12-10")  # deferred to Thursday 09:00 Shanghai
    late = harness.job("2026-11-10", debtor__phone="+8613700137999")  # 22 days late: escalated
    harness.run(*demo, planned, late)
    waiting = harness.stack.agenda.upcoming(WEDNESDAY_10 + timedelta(days=14))
    demo_invoices = {job["invoice"]["id"] for job in demo}
    assert any(payload["job"]["invoice"]["id"] in demo_invoices for _, _, payload in waiting), "the demo plans ahead"
    env = {**harness.stack.env(), **harness.worker_env}
    with serving(harness.log, env, harness.stack.clock.now) as url:
        context = chromium.new_context(accept_downloads=True)
        page = context.new_page()
        sign_in(page, url, "ops.he")
        page.get_by_role("link", name="Schedule").click()
        expect(page.get_by_role("img", name=re.compile("Sends per day by channel"))).to_be_visible()
        expect(page.get_by_role("row", name=re.compile(r"^2026-12-03 Thu"))).to_contain_text("1")
        accessible(page)
        for _, _, payload in waiting:  # each of the demo's planned steps, in the debtor's local time
            if payload["job"]["invoice"]["id"] in demo_invoices:
                page.goto(f"{url}/console/schedule?target={payload['job']['invoice']['id']}")
                expect(page.get_by_role("table", name=re.compile("Pending steps"))).to_contain_text(
                    payload["job"]["job_id"])
                break
        page.get_by_label("Account or invoice").fill(planned["invoice"]["id"])
        page.get_by_role("button", name="Show pending steps").click()
        expect(page.get_by_role("cell", name=re.compile("2026-12-03 09:00 Thu"))).to_be_visible()
        page.get_by_label(f"Reason for pausing {planned['invoice']['id']}").fill("customer asked to wait")
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("status")).to_contain_text("paused")
        page.get_by_role("button", name="Resume").click()
        expect(page.get_by_role("status")).to_contain_text("reminders resume")
        accessible(page)

        page.get_by_role("link", name="Escalations").click()
        invoice = late["invoice"]["id"]
        expect(page.get_by_role("heading", name=re.compile(f"Invoice {invoice}"))).to_be_visible()
        accessible(page)
        page.get_by_role("button", name=f"Assign to me: {invoice}").click()
        expect(page.get_by_role("status")).to_contain_text("console:ops.he")
        page.get_by_label(f"Outcome for {invoice}").select_option("promised")
        page.get_by_label(f"Promised date for {invoice} (when promised)").fill("2026-12-09")
        page.get_by_label(f"Note on {invoice}").fill("reached him by phone")
        page.get_by_role("button", name=f"Close case {invoice}").click()
        expect(page.get_by_role("status")).to_contain_text("case closed (promised)")
        promised = [r for r in harness.log.history(invoice=invoice) if r["status"] == "promised"]
        assert promised and promised[0]["detail"]["until"] == "2026-12-09"

        page.get_by_role("link", name="Simulate").click()
        accessible(page)
        page.get_by_label("Days").fill("7")
        page.get_by_role("button", name="Run simulation").click()
        expect(page.get_by_role("status")).to_contain_text("Done:", timeout=60_000)
        expect(page.get_by_role("img", name=re.compile("Sends per day by channel"))).to_be_visible()
        accessible(page)
        with page.expect_download() as download:
            page.get_by_role("link", name="Export CSV").click()
        rows = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
        assert rows[0].startswith("day,local_time,utc") and len(rows) > 5

        for path in ("/console/search", "/console/records", "/console/people", "/console/keys"):
            page.goto(url + path)
            expect(page.get_by_role("heading", name="Not for your role")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        sign_in(page, url, "reader.qin")
        page.goto(f"{url}/console/templates/edit/zh-CN/due_day.sms.j2")
        expect(page.get_by_role("heading", name="Not for your role")).to_be_visible()
        context.close()
