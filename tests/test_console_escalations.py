"""The operator's Escalations page over a real worker's log, both databases: open cases
oldest first with their summary and masked contact history (the view recorded), taken
by an operator, closed with an outcome and a note — "promised" asks for the date and
records the promise — each a chained event; a closed case leaves the list."""

from __future__ import annotations

import html
import re

from harness import WEDNESDAY_10, Harness, serving
from test_console import PASSWORD, Browser

from worker.users.people import People


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_operators_take_and_close_escalated_cases(harness: Harness) -> None:
    People(harness.log).add_user("case.op", "operator", PASSWORD, WEDNESDAY_10, by="test")
    first = harness.job("2026-11-10", debtor__phone="+8613700137001")  # 22 days past due: escalated
    second = harness.job("2026-11-12", debtor__phone="+8613700137002")
    harness.run(first)
    harness.run(second)
    a, b = first["invoice"]["id"], second["invoice"]["id"]
    env = {**harness.stack.env(), **harness.worker_env}
    with serving(harness.log, env, harness.stack.clock.now) as url:
        person = Browser(url)
        assert person.sign_in("case.op").status_code == 303
        page = person.get("/console/escalations")
        said = text_of(page.text)
        assert said.index(f"Invoice {a}") < said.index(f"Invoice {b}"), "oldest first"
        assert "22 days past due" in said and "¥12,800.00" in said.replace("CN¥", "¥")
        assert "+8613700137001" not in page.text and first["debtor"]["email"] not in page.text, "masked"
        assert "escalate" in said and "nobody yet" in said
        viewed = [r for r in harness.log.history() if r["kind"] == "access" and "escalations" in (r["detail"] or {})]
        assert viewed and a in viewed[-1]["detail"]["escalations"]
        # Wednesday 10:00 in Shanghai: the window is open; the debtor's own time is shown
        assert "Debtor's time 2026-12-02 10:00 Wed Asia/Shanghai" in said, said[:3000]
        assert "Contact window open until" in said and "voice: may be used now" in said

        shown = person.get(f"/console/escalations?reveal={a}")
        assert "+8613700137001" in shown.text and first["debtor"]["email"] in shown.text, "the operator must call"
        assert "+8613700137002" not in shown.text, "only the case asked for"
        [unmasked] = [r for r in harness.log.history() if r["kind"] == "access" and r["status"] == "unmasked"]
        assert unmasked["detail"]["invoice"] == a and unmasked["detail"]["user"] == "case.op"

        taken = person.post("/console/escalations/assign", {"invoice": a}, csrf_from="/console/escalations")
        assert f"{a}: the case is console:case.op's" in text_of(taken.text)
        no_date = person.post("/console/escalations/close", {"invoice": a, "outcome": "promised", "note": "called"},
                              csrf_from="/console/escalations")
        assert no_date.status_code == 422 and "the date the debtor promised to pay" in text_of(no_date.text)
        closed = person.post("/console/escalations/close", {"invoice": a, "outcome": "promised", "until": "2026-12-10",
                                                            "note": "reached her, pays on the 10th"},
                             csrf_from="/console/escalations")
        assert closed.status_code == 200 and f"{a}: case closed (promised)" in text_of(closed.text)
        assert f"Invoice {a}" not in text_of(closed.text) and f"Invoice {b}" in text_of(closed.text)
        other = person.post("/console/escalations/close", {"invoice": b, "outcome": "other", "note": "wrong number"},
                            csrf_from="/console/escalations")
        assert "No open escalations." in text_of(other.text)
        again = person.post("/console/escalations/close", {"invoice": b, "outcome": "paid"},
                            csrf_from="/console/escalations")
        assert again.status_code == 404
    worked = [(r["kind"], r["status"], r["detail"]) for r in harness.log.history(invoice=a)
              if r["kind"] in ("escalation", "invoice") and r["status"] != "escalated"
              and (r["detail"] or {}).get("by", "").startswith("console:")]
    assert worked == [
        ("escalation", "assigned", {"by": "console:case.op"}),
        ("invoice", "promised", {"until": "2026-12-10", "by": "console:case.op"}),
        ("escalation", "closed", {"outcome": "promised", "note": "reached her, pays on the 10th",
                                  "until": "2026-12-10", "by": "console:case.op"})]
    assert harness.log.verify().intact
