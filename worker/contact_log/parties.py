"""Who a job names, so that a person is found by anything billing told us about them —
the account id (without regard to case), the debtor's email, phone, name and company —
not only by the addresses we contacted or that wrote to us.

The values are personal, so the table keeps blind indexes only (`Vault.index`: HMAC
under the log's index key), never the values: found by exact match after
normalisation (emails without case, phone numbers E.164, names and companies in
Unicode's compatible form with their spaces collapsed, without case). Written as intake
records each job; erasure deletes an account's marks with its keys (`Vault.destroy`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import phonenumbers
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from worker.db.schema import jobs, party_marks
from worker.db.vault import ERASED, Vault

_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")


class Named(StrEnum):
    """What a mark stands for (a name of its own: `kinds.Kind` is the log's words)."""

    ACCOUNT = "account"
    EMAIL = "email"
    PHONE = "phone"
    NAME = "name"
    COMPANY = "company"
    PENDING = "pending"  # an account whose jobs came before marks were kept: `mark_pending` does them


def normalised(text: str) -> str:
    """An address as the log keeps it: emails without case, phone numbers E.164
    (`+86 138-0013-8000`, `0086 13800138000` → `+8613800138000`)."""
    text = text.strip()
    if "@" in text:
        return text.casefold()
    compact = _PHONE_PUNCTUATION.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if compact.startswith("+"):
        try:
            return phonenumbers.format_number(phonenumbers.parse(compact, None), phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            return compact
    return text


def folded(text: str) -> str:
    """A name or an id as compared: NFKC (full-width letters and digits as ASCII), spaces
    collapsed; the index folds case."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def named_in(account_id: str, payload: str) -> set[tuple[Named, str]]:
    """What a job's JSON names about its debtor, normalised."""
    try:
        debtor = json.loads(payload).get("debtor") or {}
    except (ValueError, AttributeError):
        debtor = {}
    found = {(Named.ACCOUNT, folded(account_id))}
    # The job contract takes phone numbers in E.164 only: already as searches normalise them.
    for kind, key, norm in ((Named.EMAIL, "email", normalised), (Named.PHONE, "phone", str.strip),
                            (Named.NAME, "name", folded), (Named.COMPANY, "company", folded)):
        value = debtor.get(key) if isinstance(debtor, dict) else None
        if isinstance(value, str) and value.strip():
            found.add((kind, norm(value)))
    return found


def mark(conn: Connection, vault: Vault, named: Iterable[tuple[str, str]]) -> None:
    """Keep the marks of these jobs ((account id, JSON) each), in the caller's transaction."""
    rows = {(vault.index(value, conn), kind.value, account)
            for account, payload in named for kind, value in named_in(account, payload)}
    if rows:
        conn.execute(_insert(conn), [{"mark": m, "kind": k, "account_id": a} for m, k, a in sorted(rows)])


def marks_for(text: str, vault: Vault, conn: Connection) -> list[str]:
    """The marks a searched text may match: as an address, and as a name or an id."""
    return sorted({vault.index(normalised(text), conn), vault.index(folded(text), conn)})


def accounts_named(conn: Connection, vault: Vault, text: str,
                   kinds: Iterable[Named] = tuple(Named)) -> dict[str, set[Named]]:
    """The accounts whose jobs name `text` (as an address, a name, a company or the account
    id without case): {account id: what matched}."""
    found: dict[str, set[Named]] = {}
    for row in conn.execute(select(party_marks.c.account_id, party_marks.c.kind).where(
            party_marks.c.mark.in_(marks_for(text, vault, conn)),
            party_marks.c.kind.in_([k.value for k in kinds]))):
        found.setdefault(row.account_id, set()).add(Named(row.kind))
    return found


def mark_pending(engine: Engine, vault: Vault, batch: int = 200) -> int:
    """Mark the accounts whose jobs came before marks were kept (migration 0012 noted
    them); how many. Idempotent; `worker` and `serve` run it as they start."""
    done = 0
    while True:
        with engine.begin() as conn:
            accounts = list(conn.execute(select(party_marks.c.account_id).where(
                party_marks.c.kind == Named.PENDING).limit(batch)).scalars())
            for account in accounts:
                payloads = conn.execute(select(jobs.c.payload).where(jobs.c.account_id == account,
                                                                     jobs.c.payload != ERASED)).scalars()
                mark(conn, vault, [(account, vault.open("payload", p, conn)) for p in payloads])
            conn.execute(delete(party_marks).where(party_marks.c.kind == Named.PENDING,
                                                   party_marks.c.account_id.in_(accounts)))
        done += len(accounts)
        if len(accounts) < batch:
            return done


_INSERTS = {name: module.insert(party_marks).on_conflict_do_nothing(index_elements=["mark", "kind", "account_id"])
            for name, module in (("postgresql", postgresql), ("sqlite", sqlite))}


def _insert(conn: Connection) -> Any:
    return _INSERTS["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
