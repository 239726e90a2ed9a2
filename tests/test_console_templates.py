"""The operator's template pages over real HTTP, both databases: the list, the editor's
preview (SMS segments, the email's HTML), "Check" with the rules of `templates check`,
a draft that fails them cannot be published, four eyes (the author cannot approve),
history with diffs, rollback through the same approval, and roles."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from harness import serving
from test_console import ENV, PASSWORD, Browser

from worker.contact_log import ContactLog
from worker.messages.library import Library, VersionState
from worker.users.people import People

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
SMS = "en-US/due_day.sms.j2"
EDIT = f"/console/templates/edit/{SMS}"


@pytest.fixture()
def console(log: ContactLog) -> Iterator[str]:
    for name, role in (("li.na", "compliance"), ("wang.fang", "operator"), ("zhao.lei", "operator"),
                       ("admin", "admin")):
        People(log).add_user(name, role, PASSWORD, NOW, by="test")
    with serving(log, ENV, lambda: NOW) as url:
        yield url


def operator(console: str, name: str = "wang.fang") -> Browser:
    person = Browser(console)
    assert person.sign_in(name).status_code == 303
    return person


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_the_list_shows_each_templates_published_version_and_check(console: str) -> None:
    listing = operator(console).get("/console/templates")
    assert listing.status_code == 200
    assert f'href="/console/templates/edit/{SMS}"' in listing.text and "passes" in listing.text
    assert "error" not in text_of(listing.text).replace("errors", "")


def test_the_editor_previews_the_draft_for_the_sample_debtor(console: str) -> None:
    person = operator(console)
    page = person.get(EDIT)
    assert '<label for="source">Template source</label>' in page.text
    for button in ("Preview", "Check", "Save draft", "Publish"):
        assert f">{button}</button>" in page.text
    assert "Encoding GSM-7" in page.text  # the published version, previewed as the page opens
    draft = ("Hello {{ debtor.name }}, {{ invoice.amount_due|money(invoice.currency) }} is {{ days_overdue }} days "
             "late. {{ opt_out }}")
    shown = person.post(EDIT, {"action": "preview", "source": draft, "amount": "99.50", "dpd": "4", "kind": "person",
                               "profile": "default"}, csrf_from=EDIT)
    assert shown.status_code == 200
    said = text_of(shown.text)
    assert "$99.50 is 4 days late. Reply STOP to opt out." in said and "Encoding GSM-7, 1 segment." in said
    business = person.post("/console/templates/preview/" + SMS, {"source": draft, "amount": "99.50", "dpd": "4",
                                                                 "kind": "business"}, csrf_from=EDIT)
    assert business.status_code == 200 and "days late." in business.text and "STOP" not in business.text
    assert "<html" not in business.text, "the script gets the pane alone"
    broken = person.post(EDIT, {"action": "preview", "source": "{{ invoice.nope }}"}, csrf_from=EDIT)
    assert "en-US/due_day.sms.j2:1: undefined variable" in text_of(broken.text)
    email = person.get("/console/templates/edit/en-US/due_day.email.j2")
    assert 'title="The email\'s HTML part" sandbox=""' in email.text and "Subject" in email.text


def test_a_draft_that_fails_its_checks_is_kept_but_not_published(console: str, log: ContactLog) -> None:
    person = operator(console)
    assert person.get(EDIT).status_code == 200  # the console imports the folder, as a worker would
    before = Library(log).live_templates()[SMS]
    threat = "Pay {{ invoice.number }} now or we call the police. {{ opt_out }}"
    checked = person.post(EDIT, {"action": "check", "source": threat}, csrf_from=EDIT)
    assert "forbidden phrase 'police'" in text_of(checked.text)
    refused = person.post(EDIT, {"action": "publish", "source": threat}, csrf_from=EDIT)
    assert refused.status_code == 422 and "not published: it fails its checks" in text_of(refused.text)
    assert Library(log).live_templates()[SMS] == before
    assert Library(log).template_versions(SMS)[0].state == VersionState.DRAFT
    no_opt_out = person.post(EDIT, {"action": "check", "source": "Pay {{ invoice.number }}."}, csrf_from=EDIT)
    assert "opt-out line is missing" in text_of(no_opt_out.text)


def test_four_eyes_then_rollback_through_the_same_approval(console: str, log: ContactLog) -> None:
    author, reviewer = operator(console), operator(console, "zhao.lei")
    assert author.get(EDIT).status_code == 200
    first = Library(log).live_templates()[SMS]
    new = "Invoice {{ invoice.number }} is due today. {% if opt_out %}{{ opt_out }}{% endif %}"
    published = author.post(EDIT, {"action": "publish", "source": new}, csrf_from=EDIT)
    assert published.status_code == 200, text_of(published.text)
    assert "waits for another operator's approval" in text_of(published.text)
    assert Library(log).live_templates()[SMS] == first, "not live before approval"
    waiting = Library(log).template_versions(SMS)[0]
    assert ">Approve</button>" not in author.get(EDIT).text and "another operator approves it" in author.get(EDIT).text
    assert ">Approve</button>" in reviewer.get(EDIT).text
    own = author.post(EDIT, {"action": "approve", "version": waiting.id}, csrf_from=EDIT)
    assert own.status_code == 409 and "another person must approve it" in text_of(own.text)
    approved = reviewer.post(EDIT, {"action": "approve", "version": waiting.id}, csrf_from=EDIT)
    assert approved.status_code == 200 and f"Version #{waiting.id} is live." in text_of(approved.text)
    assert Library(log).live_templates()[SMS] == new
    history = reviewer.get(EDIT).text
    assert 'class="added">+Invoice {{ invoice.number }} is due today.' in html.unescape(history)
    assert "wang.fang" in history and "zhao.lei" in history
    [retired] = [v for v in Library(log).template_versions(SMS) if v.state == VersionState.RETIRED]
    rolled = author.post(EDIT, {"action": "rollback", "version": retired.id}, csrf_from=EDIT)
    assert "waits for another operator's approval" in text_of(rolled.text)
    back = Library(log).template_versions(SMS)[0]
    assert back.note == f"rolled back to #{retired.id}" and back.state == VersionState.PENDING
    assert Library(log).live_templates()[SMS] == new
    reviewer.post(EDIT, {"action": "approve", "version": back.id}, csrf_from=EDIT)
    assert Library(log).live_templates()[SMS] == first
    kinds = [(r["status"], r["detail"]["by"]) for r in log.history() if r["kind"] == "template"][1:]
    assert kinds == [("published", "wang.fang"), ("approved", "zhao.lei"), ("published", "wang.fang"),
                     ("approved", "zhao.lei")]


def test_each_role_has_its_own_pages(console: str) -> None:
    reader = Browser(console)
    reader.sign_in("li.na")
    for path in ("/console/templates", EDIT, "/console/schedule", "/console/escalations", "/console/simulate"):
        assert reader.get(path).status_code == 403, path
    assert reader.post(EDIT, {"action": "publish", "source": "x"}, csrf_from="/console/search").status_code == 403
    person = operator(console)
    for path in ("/console/search", "/console/records", "/console/verify", "/console/people", "/console/keys",
                 "/console/accounts/ACME"):
        assert person.get(path).status_code == 403, path
    nav = person.get("/console/templates").text
    for name in ("Templates", "Schedule", "Escalations", "Simulate"):
        assert f">{name}</a>" in nav
    assert person.post(EDIT, {"action": "publish", "source": "x", "csrf": "forged"}).status_code == 403


@pytest.mark.parametrize(("source", "said"), [
    ("{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}", "rendering took longer"),
    ("{% for i in range(10**5) %}{{ \"x\" * 100 }}{% endfor %}", "the output passed"),
    ("{% for i in range(10**6) %}{% endfor %}", "Range too big"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    ("{{ lipsum.__globals__['os'].environ }}", "unsafe"),
    ("{{ self._TemplateReference__context }}", "unsafe"),
    ("{{ settings.secret_key }}{{ environ }}", "undefined variable"),
])
def test_a_hostile_draft_is_stopped_and_reported_never_run(console: str, source: str, said: str) -> None:
    person = operator(console)
    for action in ("preview", "check"):
        shown = person.post(EDIT, {"action": action, "source": source}, csrf_from=EDIT)
        problems = re.findall(r'class="problem"[^<]*', shown.text)
        assert shown.status_code == 200 and said in text_of(shown.text), (action, problems)
        assert ENV["DUNNING_SECRET_KEY"] not in shown.text and "Traceback" not in shown.text


def test_a_new_template_is_written_from_its_name(console: str, log: ContactLog) -> None:
    person = operator(console)
    bad = person.get("/console/templates/new?name=../../etc/passwd")
    assert bad.status_code == 422 and "LOCALE/STAGE.CHANNEL.j2 expected" in text_of(bad.text)
    went = person.get("/console/templates/new?name=fr-FR/due_day.sms.j2")
    assert went.status_code == 303 and went.headers["location"] == "/console/templates/edit/fr-FR/due_day.sms.j2"
    new = "/console/templates/edit/fr-FR/due_day.sms.j2"
    assert "A new template" in person.get(new).text
    shown = person.post(new, {"action": "preview", "source": "Facture {{ invoice.number }}. {{ opt_out }}"},
                        csrf_from=new)
    assert "Facture" in text_of(shown.text) and "rendered from fr-FR/due_day.sms.j2" in text_of(shown.text)
    published = person.post(new, {"action": "publish", "source": "Facture {{ invoice.number }}. {{ opt_out }}"},
                            csrf_from=new)
    assert "waits for another operator's approval" in text_of(published.text), text_of(published.text)[-500:]
    assert "fr-FR/due_day.sms.j2" not in Library(log).live_templates()
