"""The subject-access export (GDPR Art. 15): everything held about one person — the jobs
billing sent about them, each contact with its message as sent, the decisions and
their reasons, the events, the opt-outs — as JSON and as a readable HTML report.

A request names an account (the person is its holder: all its addresses are theirs) or
an address (the person is who holds it: other addresses in the same accounts are
someone else's, so they are masked and those messages left out). Personal data of
other people never enters the export. The export is recorded as an `access` event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from worker.contact_log import ContactLog
from worker.contact_log.kinds import AccessStatus, Event, Kind
from worker.contact_log.parties import normalised
from worker.jobs.book import JobBook
from worker.masking import mask
from worker.records.book import RecordBook
from worker.records.reproduce import reproduce
from worker.settings import Settings

_ENV = Environment(loader=PackageLoader("worker.records", "templates"), autoescape=select_autoescape(default=True),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_INTERNAL = (Kind.WEBHOOK, Kind.ACCESS, Kind.USER, Kind.KEY, Kind.MASTER_KEY)  # about us, not the person


class NothingHeld(LookupError):
    """The log holds nothing about the account or address asked for."""


@dataclass(frozen=True)
class Export:
    directory: Path
    accounts: list[str]
    addresses: list[str]
    contacts: int
    events: int


def export(log: ContactLog, book: RecordBook, jobs: JobBook, subject: str, directory: Path, now: datetime,
           settings: Settings, *, by: str) -> Export:
    """Write `records.json` and `report.html` about `subject` (an account id, an email or a
    phone number) into `directory`, and record that it was done."""
    subject = subject.strip()
    by_address = "@" in subject or subject.startswith("+") or subject.startswith("00")
    if by_address:
        address = normalised(subject)
        accounts, loose = book.about_address(address)
        theirs = {address.casefold()}
    else:
        if not book.has_account(subject):
            raise NothingHeld(f"{subject}: no account with this id, and not an email or a +E.164 phone number")
        accounts, loose = [subject], []
        theirs = {a.casefold() for a in book.addresses_of(subject)}
    if not accounts and not loose:
        raise NothingHeld(f"{mask('address', subject)}: the contact log holds nothing about this address")
    held = _gather(log, jobs, accounts, loose, theirs, settings)
    held["request"] = {"subject": subject, "by": by, "generated_at": now.isoformat(),
                       "kind": "address" if by_address else "account"}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "records.json").write_text(json.dumps(held, ensure_ascii=False, indent=2, default=str) + "\n",
                                            encoding="utf-8")
    (directory / "report.html").write_text(_ENV.get_template("report.html").render(held=held), encoding="utf-8")
    log.record(Event(Kind.ACCESS, AccessStatus.EXPORTED, address=address if by_address else None,
                     account_id=None if by_address else subject,
                     detail={"user": by, "subject_access": True, "accounts": accounts,
                             **({"search": address} if by_address else {"account": subject})}), now)
    return Export(directory, accounts, sorted(theirs), len(held["contacts"]), len(held["events"]))


def _gather(log: ContactLog, book: JobBook, accounts: list[str], loose: list[dict[str, Any]], theirs: set[str],
            settings: Settings) -> dict[str, Any]:
    def shown(address: Any) -> Any:
        """The person's own addresses in full; anybody else's masked."""
        if not isinstance(address, str) or not address or address.casefold() in theirs or address.startswith("["):
            return address
        return mask("address", address)

    jobs: list[dict[str, Any]] = []
    contacts: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    happenings: list[dict[str, Any]] = []
    opt_outs: list[dict[str, Any]] = []
    for account in accounts:
        for row in log.jobs_of(account=account):
            kept = book.job_row(row["job_id"]) or {}
            jobs.append({"job_id": row["job_id"], "invoice_id": row["invoice_id"], "account_id": account,
                         "received_at": row["received_at"], "data": _own(_json(kept.get("payload")), theirs, shown)})
        for row in log.history(account=account):
            if row["kind"] in _INTERNAL:
                continue
            event = _event(row, shown)
            happenings.append(event)
            if row["kind"] == Kind.DECISION:
                decisions.append({"at": event["occurred_at"], "job_id": row["job_id"], "action": row["status"],
                                  **{k: (row["detail"] or {}).get(k) for k in ("channel", "stage", "reasons", "rules",
                                                                               "zones", "until", "window_end")}})
            if row["kind"] == Kind.SUPPRESSION:
                opt_outs.append(event)
            if row["kind"] == Kind.DELIVERY and row["status"] == "claimed" and row.get("delivery_id"):
                contacts.append(_contact(log, row, theirs, shown, settings))
    for row in loose:
        event = _event(row, shown)
        happenings.append(event)
        if row["kind"] == Kind.SUPPRESSION:
            opt_outs.append(event)
    happenings.sort(key=lambda e: (e["occurred_at"], e["id"]))
    return {"subject": {"accounts": accounts, "addresses": sorted(theirs)}, "jobs": jobs, "contacts": contacts,
            "decisions": decisions, "opt_outs": opt_outs, "events": happenings}


def _contact(log: ContactLog, row: dict[str, Any], theirs: set[str], shown: Any, settings: Settings) -> dict[str, Any]:
    recipient = row.get("recipient")
    contact: dict[str, Any] = {"delivery_id": row["delivery_id"], "claimed_at": row["occurred_at"],
                               "channel": row.get("channel"), "recipient": shown(recipient), "stage": row.get("stage"),
                               "template": row.get("template"), "template_version": row.get("template_version"),
                               "reasons": row.get("reasons"), "rules": row.get("rules"), "zones": row.get("zones")}
    record = log.delivery_record(int(row["delivery_id"]))
    if record is not None:
        contact["statuses"] = [{"at": e["occurred_at"], "status": e["status"], "provider": e["provider"],
                                "error": e["error_code"]} for e in record.events if e["kind"] == Kind.DELIVERY]
        if isinstance(recipient, str) and recipient.casefold() in theirs:
            again = reproduce(record, settings)
            if again.rendered is not None:
                contact["message"] = {"subject": again.rendered.subject, "text": again.rendered.text,
                                      "identical_to_what_was_sent": again.identical}
            else:
                contact["message"] = {"not_reproduced": again.problem}
        else:
            contact["message"] = {"not_included": "sent to another person's address"}
    return contact


def _event(row: dict[str, Any], shown: Any) -> dict[str, Any]:
    detail = {k: (shown(v) if k in ("address", "from", "to", "recipient") else v)
              for k, v in (row.get("detail") or {}).items()}
    return {"id": row["id"], "occurred_at": row["occurred_at"], "kind": row["kind"], "status": row["status"],
            "invoice_id": row.get("invoice_id"), "job_id": row.get("job_id"), "channel": row.get("channel"),
            "address": shown(row.get("address")), "recipient": shown(row.get("recipient")),
            "provider": row.get("provider"), "error_code": row.get("error_code"), "error_text": row.get("error_text"),
            "detail": detail}


def _json(payload: Any) -> Any:
    try:
        return json.loads(payload) if isinstance(payload, str) else payload
    except ValueError:
        return payload


def _own(data: Any, theirs: set[str], shown: Any) -> Any:
    """A job's data with other people's addresses masked (a company account's other contacts)."""
    if isinstance(data, dict):
        return {k: (shown(v) if k in ("email", "phone") else _own(v, theirs, shown)) for k, v in data.items()}
    if isinstance(data, list):
        return [_own(v, theirs, shown) for v in data]
    return data
