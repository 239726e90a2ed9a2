"""The console over real HTTP (uvicorn on loopback), both databases: sign-in with the
contract's labels, sessions in signed HttpOnly SameSite=Strict cookies, one answer for
every refusal, failures slowed, CSRF on every form, roles (403 outside one's own),
security headers on every page, output escaped, people and API keys managed by an
admin, the search, and every sign-in, sign-out and view in the chained log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from harness import serving
from test_pipeline import world  # noqa: F401 (the pipeline in process, for a message really sent)

from worker.contact_log import Claim, ContactLog
from worker.contact_log.checkpoints import Checkpoints
from worker.contact_log.kinds import DeliveryStatus, Event, Kind
from worker.contact_log.note import Signer, keygen
from worker.jobs.book import JobBook, JobRow
from worker.users.keys import Keys
from worker.users.people import People

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ENV = {"DUNNING_SECRET_KEY": "s" * 40}


class Browser:
    """A person at the console: cookies kept, forms posted with the page's CSRF token."""

    def __init__(self, url: str) -> None:
        self.url, self.http = url, requests.Session()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url + path, allow_redirects=False, timeout=10, **kwargs)

    def csrf(self, path: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get(path).text)
        assert found, path
        return found.group(1)

    def post(self, path: str, data: dict[str, Any], csrf_from: str | None = None) -> requests.Response:
        if csrf_from is not None:
            data = {**data, "csrf": self.csrf(csrf_from)}
        return self.http.post(self.url + path, data=data, allow_redirects=False, timeout=10)

    def sign_in(self, name: str, password: str = PASSWORD) -> requests.Response:
        return self.post("/console/sign-in", {"username": name, "password": password}, csrf_from="/console/sign-in")


@pytest.fixture()
def console(log: ContactLog) -> Iterator[str]:
    for name, role in (("li.na", "compliance"), ("wang.fang", "operator"), ("admin", "admin")):
        People(log).add_user(name, role, PASSWORD, NOW, by="test")
    moment = [NOW]
    with serving(log, ENV, lambda: moment[0]) as url:
        yield url


def test_the_sign_in_page_has_the_contracts_labels_and_the_security_headers(console: str) -> None:
    page = Browser(console).get("/console/sign-in")
    assert page.status_code == 200
    assert '<label for="username">Username</label>' in page.text
    assert '<label for="password">Password</label>' in page.text
    assert '<button type="submit">Sign in</button>' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "http" not in csp.replace("https", "") and "<script" not in page.text  # nothing from elsewhere
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "no-referrer"
    assert Browser(console).get("/console/static/console.css").headers["content-type"].startswith("text/css")


def test_a_person_signs_in_to_their_roles_pages_and_no_other(console: str, log: ContactLog) -> None:
    reader = Browser(console)
    assert reader.get("/console/search").headers["location"] == "/console/sign-in"  # no session yet
    signed = reader.sign_in("li.na")
    assert signed.status_code == 303 and signed.headers["location"] == "/console/search"
    cookie = signed.headers["set-cookie"]
    assert "dunning_console=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie  # the public URL here is http
    page = reader.get("/console/search")
    assert page.status_code == 200 and '<label for="q">Search</label>' in page.text
    assert page.headers["cache-control"] == "no-store"
    for path in ("/console/people", "/console/keys", "/console/escalations"):
        assert reader.get(path).status_code == 403, path
    operator = Browser(console)
    assert operator.sign_in("wang.fang").headers["location"] == "/console/escalations"
    assert operator.get("/console/escalations").status_code == 200
    assert operator.get("/console/search").status_code == 403
    forged = requests.get(console + "/console/search", cookies={"dunning_console": "abc.def"},
                          allow_redirects=False, timeout=10)
    assert forged.status_code == 303


def test_every_refusal_is_the_same_and_failures_slow_the_next_try(console: str) -> None:
    person = Browser(console)
    wrong, unknown = person.sign_in("li.na", "wrong horse battery"), person.sign_in("nobody.here")
    assert wrong.status_code == unknown.status_code == 401
    assert "The username or the password is not right." in wrong.text and wrong.text.replace(
        "li.na", "nobody.here") == unknown.text
    person.sign_in("li.na", "wrong horse battery")
    person.sign_in("li.na", "wrong horse battery")
    slowed = person.sign_in("li.na")  # even the right password waits now
    assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) >= 1
    assert "Too many failed sign-ins" in slowed.text


def test_forms_without_this_sessions_csrf_token_are_refused(console: str, log: ContactLog) -> None:
    admin = Browser(console)
    no_token = admin.post("/console/sign-in", {"username": "admin", "password": PASSWORD})
    assert no_token.status_code == 403
    admin.sign_in("admin")
    forged = admin.post("/console/people", {"name": "mallory", "role": "admin", "password": PASSWORD,
                                            "csrf": "forged-token"})
    assert forged.status_code == 403 and "mallory" not in [p.name for p in People(log).people()]
    other = Browser(console)
    other.sign_in("li.na")
    stolen = other.csrf("/console/search")  # another session's token
    assert admin.post("/console/people", {"name": "mallory", "role": "admin", "password": PASSWORD,
                                          "csrf": stolen}).status_code == 403
    added = admin.post("/console/people", {"name": "zhao.lei", "role": "compliance", "password": PASSWORD},
                       csrf_from="/console/people")
    assert added.status_code == 200 and "zhao.lei added (compliance)." in added.text


def test_an_admin_manages_people_and_keys(console: str, log: ContactLog) -> None:
    admin = Browser(console)
    admin.sign_in("admin")
    short = admin.post("/console/people", {"name": "zhao.lei", "role": "compliance", "password": "short"},
                       csrf_from="/console/people")
    assert short.status_code == 422 and "at least 12" in short.text
    reader = Browser(console)
    reader.sign_in("li.na")
    assert admin.post("/console/people/disable", {"name": "li.na"}, csrf_from="/console/people").status_code == 200
    assert reader.get("/console/search").status_code == 303  # their session ended at once
    made = admin.post("/console/keys", {"name": "erp-prod", "scopes": ["jobs:write", "read"]},
                      csrf_from="/console/keys")
    key = re.search(r'aria-label="New key">(dk_[A-Za-z0-9_-]+)<', made.text)
    assert made.status_code == 200 and key is not None
    assert Keys(log).authenticate(key.group(1), NOW) is not None
    assert key.group(1) not in admin.get("/console/keys").text  # shown once
    assert admin.post("/console/keys/revoke", {"name": "erp-prod"}, csrf_from="/console/keys").status_code == 200
    assert Keys(log).authenticate(key.group(1), NOW) is None


def test_search_finds_a_person_by_any_key_and_each_look_is_recorded(console: str, log: ContactLog) -> None:
    delivery = log.claim(Claim("INV-7/due_day#sms", "INV-7/due_day", "INV-7", "ACME-7", "sms", "+8613800138000",
                               "due_day", None, None, (), (), ()), NOW)
    assert delivery is not None
    log.record(Event(Kind.DELIVERY, DeliveryStatus.SENT, delivery_id=delivery.id), NOW)
    reader = Browser(console)
    reader.sign_in("li.na")
    for query in ("ACME-7", "INV-7", "+86 138-0013-8000", "0086 13800138000"):
        found = reader.get("/console/search", params={"q": query})
        assert found.status_code == 200 and '<a href="/console/invoices/INV-7">INV-7</a>' in found.text, query
    nothing = reader.get("/console/search", params={"q": "<script>alert(1)</script>"})
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in nothing.text and "<script>alert" not in nothing.text
    reader.post("/console/sign-out", {}, csrf_from="/console/search")
    assert reader.get("/console/search").status_code == 303
    trail = [(r["status"], r["detail"].get("search")) for r in log.history() if r["kind"] == "access"]
    assert trail == [("signed-in", None), ("viewed", "ACME-7"), ("viewed", "INV-7"), ("viewed", "+86 138-0013-8000"),
                     ("viewed", "0086 13800138000"), ("viewed", "<script>alert(1)</script>"), ("signed-out", None)]
    assert all(r["detail"]["address"] == "127.0.0.1" for r in log.history() if r["kind"] == "access")
    assert log.verify().intact


def test_search_finds_what_the_jobs_name_and_opt_outs_not_only_who_was_contacted(
        console: str, log: ContactLog) -> None:
    """A person is found by anything billing sent about them — the job's phone and email in
    any format, the debtor's name and company, the account id in any case — and a number
    opted out by billing alone; an empty search lists the recently active accounts."""
    import json

    from conftest import job_data

    from worker.events import Events
    job = job_data(job_id="INV-5/due_day", invoice__id="INV-5", debtor__account_id="ACME-5",
                   debtor__name="Li Na", debtor__company="Ｎorth Wind Trading", debtor__email="Li.Na@Example.com",
                   debtor__phone="+8613900139000")
    taken, _ = JobBook(log).take_jobs([JobRow("INV-5/due_day", "INV-5", "ACME-5", json.dumps(job))], NOW)
    assert taken == ["INV-5/due_day"]
    Events(log, None).optout("+14155550188", NOW, by="api:erp")  # a number no job names
    reader = Browser(console)
    reader.sign_in("li.na")
    for query in ("+86 139-0013-9000", "0086 13900139000", "li.na@example.com", "LI.NA@EXAMPLE.COM", "li na",
                  "north wind trading", "acme-5", "INV-5"):
        found = reader.get("/console/search", params={"q": query})
        assert '<a href="/console/invoices/INV-5">INV-5</a>' in found.text, query
    matched = cells_of(reader.get("/console/search", params={"q": "li  NA"}).text)
    assert matched[0][:4] == ['<a href="/console/accounts/ACME-5">ACME-5</a>',
                              '<a href="/console/invoices/INV-5">INV-5</a>', "open", "name"], matched
    assert "nothing yet" in matched[0][5], "received, not yet worked"
    opted = reader.get("/console/search", params={"q": "+1 415 555 0188"}).text
    assert "+14155550188: no account or job names this address" in opted and "Nothing matches" not in opted
    assert "Nothing matches" in reader.get("/console/search", params={"q": "Li"}).text, "whole names only"
    log.record(Event(Kind.INVOICE, "paid", invoice_id="INV-5", account_id="ACME-5", detail={"by": "x"}), NOW)
    empty = reader.get("/console/search").text
    assert "Recently active accounts" in empty and '<a href="/console/accounts/ACME-5">ACME-5</a>' in empty
    assert "Exact match after normalisation" in empty, "the page says how it matches"


def cells_of(html: str) -> list[list[str]]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in body.split("<tr")[1:]]


def test_a_session_ends_after_idle_time(log: ContactLog) -> None:
    People(log).add_user("li.na", "compliance", PASSWORD, NOW, by="test")
    moment = [NOW]
    with serving(log, ENV, lambda: moment[0]) as url:
        reader = Browser(url)
        reader.sign_in("li.na")
        moment[0] = NOW + timedelta(minutes=29)
        assert reader.get("/console/search").status_code == 200
        moment[0] = NOW + timedelta(minutes=29 + 31)
        assert reader.get("/console/search").status_code == 303


def record_an_invoice(log: ContactLog) -> None:
    """INV-8 of ACME-8 in Shanghai: sent by email, a later step not sent (paid), the payment."""
    decision = {"action": "send", "channel": "email", "reasons": ["stage due_day: email"], "rules": ["W-BIZ"],
                "zones": ["Asia/Shanghai"], "window_end": "2026-12-02T11:30:00+08:00"}
    delivery = log.claim(Claim("INV-8/due_day#email", "INV-8/due_day", "INV-8", "ACME-8", "email",
                               "zhang.wei@example.com", "due_day", "zh-CN/due_day.email.j2", "ab" * 32,
                               ("stage due_day: email",), ("W-BIZ",), ("Asia/Shanghai",)), NOW, decision=decision)
    assert delivery is not None
    log.record(Event(Kind.DELIVERY, DeliveryStatus.SENT, delivery_id=delivery.id, provider="smtp"), NOW)
    log.record(Event(Kind.INVOICE, "paid", invoice_id="INV-8", account_id="ACME-8",
                     detail={"by": "billing:erp", "note": "<b>wire</b> received"}), NOW + timedelta(days=1))
    log.record(Event(Kind.DECISION, "skip", job_id="INV-8/overdue_early", invoice_id="INV-8", account_id="ACME-8",
                     detail={"action": "skip", "reasons": ["the invoice is paid"], "rules": ["S-PAID"],
                             "zones": ["Asia/Shanghai"]}), NOW + timedelta(days=2))


def cells(html: str) -> list[list[str]]:
    """The rows of the events table (after the jobs received, if any)."""
    body = html.split("<h2>Events</h2>", 1)[-1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in body.split("<tr")[1:]]


def test_the_timeline_shows_sends_and_what_was_not_sent_with_the_reasons(console: str, log: ContactLog) -> None:
    record_an_invoice(log)
    JobBook(log).accept_job("INV-8/due_day", "INV-8", "ACME-8", "{}", NOW - timedelta(hours=2))
    reader = Browser(console)
    reader.sign_in("li.na")
    found = reader.get("/console/search", params={"q": "INV-8"})
    assert "<td>paid</td>" in found.text  # the invoice's state
    page = reader.get("/console/invoices/INV-8")
    assert page.status_code == 200
    assert "<h2>Jobs received</h2>" in page.text
    assert "<td>INV-8/due_day</td><td>INV-8</td><td>2026-12-02 00:00:00</td><td>2026-12-02 08:00 Wed</td>" in page.text
    rows = cells(page.text)
    assert [(r[2], r[3]) for r in rows] == [("decision", "<strong>not sent</strong> (skip)"), ("invoice", "paid"),
                                            ("delivery", "sent"), ("delivery", "claimed"), ("decision", "send")]
    assert rows[0][6].startswith("the invoice is paid") and "S-PAID" in rows[0][6]
    assert rows[-1][0] == "2026-12-02 02:00:00" and rows[-1][1] == "2026-12-02 10:00 Wed"  # UTC and Shanghai
    assert rows[1][7] == "billing:erp" and "&lt;b&gt;wire&lt;/b&gt; received" in rows[1][5]
    assert "z***@example.com" in page.text and "zhang.wei@example.com" not in page.text
    assert '<a href="/console/deliveries/1">View message</a>' in page.text
    full = reader.get("/console/invoices/INV-8", params={"unmasked": "1"})
    assert "zhang.wei@example.com" in full.text
    only = reader.get("/console/accounts/ACME-8", params={"kind": "decision"})
    assert [r[2] for r in cells(only.text)] == ["decision", "decision"]
    sms = reader.get("/console/accounts/ACME-8", params={"channel": "sms"})
    assert "No events match these filters" in sms.text
    later = reader.get("/console/accounts/ACME-8", params={"since": "2026-12-03", "until": "2026-12-04"})
    assert [r[3] for r in cells(later.text)] == ["paid"]
    trail = [(r["status"], r["detail"].get("invoice") or r["detail"].get("account") or r["detail"].get("search"))
             for r in log.history() if r["kind"] == "access" and r["status"] != "signed-in"]
    assert trail == [("viewed", "INV-8"), ("viewed", "INV-8"), ("viewed", "INV-8"), ("unmasked", "INV-8"),
                     ("viewed", "ACME-8"),
                     ("viewed", "ACME-8"), ("viewed", "ACME-8")]
    operator = Browser(console)
    operator.sign_in("wang.fang")
    assert operator.get("/console/invoices/INV-8").status_code == 403


def test_a_long_timeline_is_paginated(console: str, log: ContactLog) -> None:
    for n in range(205):
        log.record(Event(Kind.DECISION, "defer", job_id=f"INV-9/s{n}", invoice_id="INV-9", account_id="ACME-9",
                         detail={"action": "defer", "until": f"n{n}", "reasons": [], "rules": []}), NOW)
    reader = Browser(console)
    reader.sign_in("li.na")
    first = reader.get("/console/invoices/INV-9")
    assert len(cells(first.text)) == 200 and "moved to n204" in first.text
    older = re.search(r'<a href="([^"]+)">Older events</a>', first.text)
    assert older is not None
    second = reader.get(older.group(1).replace("&amp;", "&"))
    assert len(cells(second.text)) == 5 and "moved to n0" in second.text and "Older events" not in second.text


def test_a_message_is_shown_as_sent_reproduced_and_proven_identical(world: Any) -> None:  # noqa: F811
    import json as _json

    from test_pipeline import email_job

    from worker.jobs.parse import parse_job
    from worker.policy import profiles
    from worker.queue.envelope import envelope_for

    data = email_job()
    job = parse_job(data, profiles(None)).job
    assert job is not None
    JobBook(world.log).accept_job(job.job_id, job.invoice.id, job.debtor.account_id, _json.dumps(data), NOW)
    assert world.handle(dict(envelope_for(job))) == "sent"
    [sent_mail] = world.mail.messages()
    People(world.log).add_user("li.na", "compliance", PASSWORD, NOW, by="test")
    with serving(world.log, {"DUNNING_SECRET_KEY": "k" * 32}, lambda: NOW) as url:  # the worker's key
        reader = Browser(url)
        reader.sign_in("li.na")
        timeline = reader.get(f"/console/invoices/{job.invoice.id}")
        link = re.search(r'<a href="(/console/deliveries/\d+)">View message</a>', timeline.text)
        assert link is not None
        page = reader.get(link.group(1))
        assert page.status_code == 200 and "identical to what was sent" in page.text
        assert html_unescape(sent_mail["Subject"]) in html_unescape(page.text)
        frame = re.search(r'<iframe title="[^"]+" sandbox="" src="(/console/frames/[^"]+)"', page.text)
        assert frame is not None
        shown = requests.get(url + frame.group(1), timeout=10)  # the token is the way in: no cookie
        assert shown.status_code == 200 and "<html" in shown.text.lower() and 'style="' in shown.text
        policy = shown.headers["content-security-policy"]
        assert "style-src 'unsafe-inline'" in policy and "script" not in policy and "default-src 'none'" in policy
        assert "frame-ancestors 'self'" in policy, "only the console may frame it"
        assert requests.get(url + "/console/frames/not-a-token", timeout=10).status_code == 404
        assert "W-BIZ" in page.text and "claimed" in page.text and "sent" in page.text
        assert job.debtor.email not in page.text  # masked in the heading
        assert reader.get("/console/deliveries/999999").status_code == 404
    changed = {"DUNNING_SECRET_KEY": "k" * 32, "DUNNING_SENDER_NAME": "A Company Renamed Since"}
    with serving(world.log, changed, lambda: NOW) as url:
        reader = Browser(url)
        reader.sign_in("li.na")
        assert "it differs from what was sent" in reader.get(link.group(1)).text
    viewed = [r["detail"].get("delivery") for r in world.log.history() if r["status"] == "viewed"]
    assert viewed.count(int(link.group(1).rsplit("/", 1)[1])) == 2


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_verify_recomputes_the_chain_in_the_background_and_names_what_was_altered(console: str,
                                                                                 log: ContactLog) -> None:
    import time

    from sqlalchemy import text

    record_an_invoice(log)
    reader = Browser(console)
    reader.sign_in("li.na")
    assert "Not verified from the console yet." in reader.get("/console/verify").text

    def verified() -> str:
        assert reader.post("/console/verify", {}, csrf_from="/console/verify").status_code == 303
        deadline = time.monotonic() + 20
        while "Verifying, started by" in (page := reader.get("/console/verify").text):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        return page

    first = verified()
    assert "<strong>Intact</strong>" in first and "by li.na" in first and "No checkpoint yet" in first
    Checkpoints(log).make(Signer.parse(keygen("billing.example.com/dunning")[0]), NOW + timedelta(days=30))
    checked = verified()
    assert "<code>billing.example.com/dunning</code>" in checked and "The log extends the\n  checkpoint" in checked
    with log.engine.begin() as conn:
        conn.execute(text("UPDATE events SET status = 'sent' WHERE kind = 'decision' AND status = 'skip'"))
    second = verified()
    assert "Broken" in second and "altered, or an event before it removed" in second
    with log.engine.begin() as conn:  # the newest of the debtor's events goes: its chain ends before the checkpoint
        conn.execute(text("DELETE FROM events WHERE id = (SELECT max(id) FROM events WHERE kind <> 'access')"))
    assert "cut short" in verified()
    results = [r["detail"]["intact"] for r in log.history() if r["kind"] == "access" and r["status"] == "verified"]
    assert results == [True, True, False, False]


def test_export_csv_and_json_lines_masked_unless_asked_and_recorded(console: str, log: ContactLog) -> None:
    import csv as _csv
    import json as _json

    record_an_invoice(log)
    log.suppress("ACME-8", "zhang.wei@example.com", "email", "asked to stop", NOW + timedelta(days=3), by="reply")
    reader = Browser(console)
    reader.sign_in("li.na")
    timeline = reader.get("/console/accounts/ACME-8")
    link = re.search(r'<a href="([^"]+)">Export CSV</a>', timeline.text)
    assert link is not None
    exported = reader.get(link.group(1).replace("&amp;", "&"))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert 'filename="dunning-account-ACME-8.csv"' in exported.headers["content-disposition"]
    rows = list(_csv.DictReader(exported.text.splitlines()))
    assert [r["status"] for r in rows] == ["send", "claimed", "sent", "paid", "skip", "suppressed"]  # oldest first
    assert "zhang.wei@example.com" not in exported.text and "z***@example.com" in exported.text
    lines = reader.get("/console/export", params={"account": "ACME-8", "format": "jsonl", "kind": "suppression",
                                                  "unmasked": "1"})
    [suppression] = [_json.loads(line) for line in lines.text.splitlines()]
    assert suppression["detail"]["address"] == "zhang.wei@example.com"
    trail = [(r["status"], r["detail"].get("format")) for r in log.history() if r["kind"] == "access"
             and r["status"] in ("exported", "unmasked")]
    assert trail == [("exported", "csv"), ("exported", "jsonl"), ("unmasked", None)]


def test_a_text_message_shows_its_encoding_and_segments(console: str, log: ContactLog) -> None:
    """An SMS claimed as the pipeline claims it (rendered by the same `compose`, its
    digest and template versions kept), then shown by the console."""
    import json as _json

    from conftest import job_data

    from worker.jobs.parse import parse_job
    from worker.messages.context import compose
    from worker.messages.render import Renderer
    from worker.policy import profiles
    from worker.settings import Settings

    data = job_data(debtor__phone="+8613900139000")
    job = parse_job(data, profiles(None)).job
    assert job is not None
    today = NOW.date()
    rendered = compose(Renderer(), job, "due_day", "sms", today, Settings.from_env(ENV).sender, None)
    JobBook(log).accept_job(job.job_id, job.invoice.id, job.debtor.account_id, _json.dumps(data), NOW)
    message = {"sha256": rendered.digest, "locale": rendered.locale, "today": today.isoformat(), "balance": None,
               "templates": [t.version for t in rendered.templates]}
    delivery = log.claim(Claim(f"{job.job_id}#sms", job.job_id, job.invoice.id, job.debtor.account_id, "sms",
                               "+8613900139000", "due_day", rendered.template, rendered.version, ("stage due_day",),
                               ("W-BIZ",), ("Asia/Shanghai",), message), NOW)
    assert delivery is not None
    log.keep_templates(rendered.templates, NOW)
    reader = Browser(console)
    reader.sign_in("li.na")
    page = reader.get(f"/console/deliveries/{delivery.id}")
    assert "identical to what was sent" in page.text and "Text message" in page.text
    assert re.search(r"Encoding UCS-2, \d+ segments?\.", page.text), "Chinese text: UCS-2"
    assert html_unescape(rendered.text) in html_unescape(page.text)
    assert "+86139****9000" in page.text and "+8613900139000" not in page.text


def test_wrong_pages_and_methods_answer_people_with_pages(console: str) -> None:
    reader = Browser(console)
    reader.sign_in("li.na")
    missing = reader.get("/console/no-such-page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "There is no such page." in missing.text and "frame-ancestors 'none'" in missing.headers[
        "content-security-policy"]
    assert '<a href="/console/search">Search</a>' in missing.text, "the person's navigation stays"
    wrong = reader.http.delete(console + "/console/search", timeout=10)
    assert wrong.status_code == 405 and "cannot be used that way" in wrong.text
    api = requests.get(console + "/v1/nowhere", timeout=10)  # the billing API still answers problems
    assert api.status_code in (401, 404) and api.headers["content-type"] == "application/problem+json"


def test_the_session_cookie_is_secure_when_the_public_url_is_https() -> None:
    from starlette.responses import Response

    from worker.http.console.session import Cookies

    response = Response()
    Cookies("s" * 40, secure=True).set_session(response, "token")
    cookie = response.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "token." in cookie  # and its signature after the dot


def test_a_search_exports_the_record_of_everything_it_found(console: str, log: ContactLog) -> None:
    import csv as _csv

    record_an_invoice(log)
    reader = Browser(console)
    reader.sign_in("li.na")
    found = reader.get("/console/search", params={"q": "zhang.wei@EXAMPLE.com"})
    link = re.search(r'<a href="(/console/export\?[^"]+)">Export CSV</a>', found.text)
    assert link is not None
    rows = list(_csv.DictReader(reader.get(link.group(1).replace("&amp;", "&")).text.splitlines()))
    assert [r["status"] for r in rows] == ["send", "claimed", "sent", "paid", "skip"]
    assert all("zhang.wei@example.com" not in value for r in rows for value in r.values())
    exported = [r["detail"] for r in log.history() if r["kind"] == "access" and r["status"] == "exported"]
    assert exported[0]["search"] == "zhang.wei@EXAMPLE.com" and exported[0]["events"] == 5


def test_an_unexpected_error_is_a_page_without_internals_and_the_server_keeps_serving(console: str,
                                                                                      log: ContactLog) -> None:
    from worker.db.schema import sign_in_failures

    reader = Browser(console)
    sign_in_failures.drop(log.engine)  # the database loses a table under the running server
    try:
        broken = reader.sign_in("li.na", "wrong horse battery")  # a failure is recorded there
        assert broken.status_code == 500 and broken.headers["content-type"].startswith("text/html")
        assert "Something went wrong" in broken.text and "Traceback" not in broken.text
        assert "sign_in_failures" not in broken.text and "sqlalchemy" not in broken.text.lower()
        assert "frame-ancestors 'none'" in broken.headers["content-security-policy"]
    finally:
        sign_in_failures.create(log.engine)
    assert reader.sign_in("li.na").status_code == 303  # and it goes on serving


def test_the_records_page_is_compliances_behind_csrf_and_refuses_what_is_within_retention(
        console: str, log: ContactLog) -> None:
    JobBook(log).take_jobs([JobRow("INV-7/due_day", "INV-7", "ACME-007", '{"debtor": {"email": "x@example.com"}, '
                                                                  '"profile": "cn-fi-consumer"}')], NOW)
    operator = Browser(console)
    operator.sign_in("wang.fang")
    assert operator.get("/console/records").status_code == 403
    reader = Browser(console)
    reader.sign_in("li.na")
    page = reader.get("/console/records")
    assert page.status_code == 200 and '<label for="erase-account">Account to erase</label>' in page.text
    assert reader.post("/console/records/hold", {"target": "INV-7", "reason": "x"}).status_code == 403  # no token
    held = reader.post("/console/records/hold", {"target": "INV-7", "reason": "court order 5"},
                       csrf_from="/console/records")
    assert held.status_code == 200 and "court order 5" in held.text
    unconfirmed = reader.post("/console/records/erase", {"account": "ACME-007", "reason": "request 3"},
                              csrf_from="/console/records")
    assert unconfirmed.status_code == 422 and "confirm that the erasure cannot be undone" in unconfirmed.text
    assert 'class="danger">Erase for good</button>' in page.text
    refused = reader.post("/console/records/erase", {"account": "ACME-007", "reason": "request 3", "confirm": "yes"},
                          csrf_from="/console/records")
    assert refused.status_code == 409 and "not erased" in refused.text and "on legal hold" in refused.text
    unknown = reader.post("/console/records/erase", {"account": "NOBODY", "reason": "r", "confirm": "yes"},
                          csrf_from="/console/records")
    assert unknown.status_code == 422 and "no account with this id" in unknown.text
    preview = reader.get("/console/records?as_of=2040-01-01")
    assert preview.status_code == 200 and "ACME-007" not in preview.text.split("Purge preview")[1]  # held
    assert reader.get("/console/records?as_of=tomorrow").status_code == 422
    exported = reader.post("/console/records/export", {"subject": "ACME-007", "format": "json"},
                           csrf_from="/console/records")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    assert exported.json()["subject"]["addresses"] == ["x@example.com"]
    kinds = [(r["kind"], r["status"]) for r in log.history() if r["kind"] in ("hold", "erasure", "access")]
    assert ("hold", "placed") in kinds and ("erasure", "refused") in kinds and ("access", "exported") in kinds


def test_a_webhook_attempt_reads_as_the_endpoints_answer_not_an_error() -> None:
    from zoneinfo import ZoneInfo

    from worker.http.console.views import describe
    row = {"id": 1, "kind": "webhook", "status": "delivered", "occurred_at": NOW, "error_code": "http-204",
           "detail": {"type": "reminder.sent", "attempt": 1}}
    said = describe(row, ZoneInfo("UTC"), unmasked=False)["what"]
    assert said == "reminder.sent attempt 1; the endpoint answered HTTP 204" and "error" not in said
    failed = describe({**row, "status": "failed", "error_code": "no-answer", "error_text": "timed out"},
                      ZoneInfo("UTC"), unmasked=False)["what"]
    assert failed == "reminder.sent attempt 1; no answer from the endpoint; timed out"
