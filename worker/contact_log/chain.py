"""The contact log's hash chains: what lets compliance prove nothing was altered.

The log is K chains (K fixed when the log is created, `DUNNING_LOG_CHAINS`, default
64), so that writers for different accounts do not wait on one lock: an event goes to
the chain of its account (`of_account`), an event with no account to the chain of the
address it is about, and anything else (people, keys, templates) to the house's chain.
Each chain has its own positions, 1, 2, 3... with no gap, and its own head. Chain 0 is
the single chain the log was before (events without a chain, in id order): closed when
the chains began, with its size and head recorded, and verified as it always was.

In a chain, every event carries `digest` = SHA-256 of the previous event's digest and
this event's content, in a canonical form. The `claimed` event of a delivery also covers the
delivery row (recipient, template version, reasons, rules, zones), so the record of
what was sent, to whom and why is inside the chain too. Changing any covered field of
any row, or deleting a row, breaks the chain at that row; `verify` finds it.

A chain can be cut off at its end without a trace inside the database: a signed
checkpoint of every chain's size and head, kept outside (`checkpoint.py`), is what
shows it. An event's `ID:DIGEST`, as `verify` prints the newest, is a smaller anchor:
`verify --head` checks that event is still there, unchanged.

The canonical form is a contract: rows written by one version are verified by later
ones, so it never changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.contact_log.kinds import DeliveryStatus, Kind

GENESIS = "0" * 64
DEFAULT_CHAINS = 64
EVENT_FIELDS = ("delivery_id", "job_id", "invoice_id", "account_id", "kind", "status", "provider",
                "provider_message_id", "error_code", "error_text", "detail", "occurred_at", "recorded_at", "address")
DELIVERY_FIELDS = ("delivery_key", "job_id", "invoice_id", "account_id", "channel", "recipient", "stage", "template",
                   "template_version", "reasons", "rules", "zones", "claimed_at")


def digest(previous: str, event: Mapping[Any, Any], delivery: Mapping[Any, Any] | None = None) -> str:
    """The digest of an event that follows `previous` (with its delivery, for a claim)."""
    return link(previous, canonical(event, delivery))


def canonical(event: Mapping[Any, Any], delivery: Mapping[Any, Any] | None = None) -> str:
    """An event's content (with its delivery, for a claim) as the digest covers it: known
    before the event's place in its chain is, so computed before any lock is taken."""
    content: dict[str, Any] = {name: _plain(event.get(name)) for name in EVENT_FIELDS}
    if delivery is not None:
        content["delivery"] = {name: _plain(delivery.get(name)) for name in DELIVERY_FIELDS}
    return json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def link(previous: str, content: str) -> str:
    """SHA-256 of the previous digest, a newline and the canonical content, in hex (UTF-8).
    On PostgreSQL the store computes the same in SQL, as it appends (`appending.py`)."""
    return hashlib.sha256(f"{previous}\n{content}".encode()).hexdigest()


def of_account(account_id: str, count: int) -> int:
    """The chain of an account's events (1..count): stable, whatever process asks."""
    return _spread(b"account\0" + account_id.encode(), count)


def of_address(address: str, count: int) -> int:
    """The chain of an address's events that name no account, and the chain whose lock
    every writer about the address holds (an opt-out by address covers every account)."""
    return _spread(b"address\0" + address.casefold().encode(), count)


def of_house(count: int) -> int:
    """The chain of events about no account or address: people, keys, templates."""
    return _spread(b"house", count)


def of_event(account_id: str | None, address: str | None, count: int) -> int:
    """The chain an event goes to: its account's, else its address's, else the house's."""
    if account_id is not None:
        return of_account(account_id, count)
    return of_address(address, count) if address is not None else of_house(count)


def _spread(key: bytes, count: int) -> int:
    return 1 + int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % count


def covers_delivery(event: Mapping[Any, Any]) -> bool:
    """Whether an event's digest covers its delivery row: the claim, written with it."""
    return event.get("kind") == Kind.DELIVERY and event.get("status") == DeliveryStatus.CLAIMED


@dataclass
class Verdict:
    """What `verify` found: how much was checked, each chain's size and head, every break."""

    events: int = 0
    head: str = f"0:{GENESIS}"  # the newest event checked, ID:DIGEST
    heads: dict[int, tuple[int, str]] = field(default_factory=dict)  # chain: (size, head digest)
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify(rows: Iterable[Mapping[Any, Any]], head: str | None = None,
           closed: tuple[int, str] | None = None) -> Verdict:
    """Walk events chain by chain — chain 0 (no `chain`) in id order, then each chain by
    position — each with its delivery's columns prefixed `d_`, and recompute every link.
    After a break the stored digest is taken as given, so one altered row is one
    finding, not every row after it. `closed` is chain 0's size and head as recorded
    when the chains began: it must end exactly there."""
    verdict = Verdict()
    previous, anchor_seen, current, size, newest = GENESIS, head is None, 0, 0, 0
    anchor_id, _, anchor_digest = (head or "").partition(":")
    for row in rows:
        verdict.events += 1
        number = row["chain"] or 0
        if number != current:
            _close(verdict, current, size, previous, closed)
            previous, current, size = GENESIS, number, 0
        size += 1
        gap = bool(number) and row["position"] != size
        if gap:
            verdict.problems.append(f"event {row['id']} (chain {number}, position {row['position']}, {size} "
                                    "expected): an event before it was removed")
            size = int(row["position"])
        delivery = ({name: row[f"d_{name}"] for name in DELIVERY_FIELDS}
                    if covers_delivery(row) and row.get("d_delivery_key") is not None else None)
        if covers_delivery(row) and delivery is None:
            verdict.problems.append(f"event {row['id']}: the delivery it claims ({row['delivery_id']}) is missing")
        expected = digest(previous, row, delivery)
        if row["digest"] != expected and not gap:  # a gap is its own finding
            verdict.problems.append(f"event {row['id']} ({row['kind']} {row['status']}, "
                                    f"{_plain(row['occurred_at'])}): altered, or an event before it removed")
        if str(row["id"]) == anchor_id:
            anchor_seen = True
            if row["digest"] != anchor_digest:
                verdict.problems.append(f"event {row['id']}: its digest is not the one in the anchor {head}")
        previous = row["digest"] or expected
        if int(row["id"]) > newest:
            newest, verdict.head = int(row["id"]), f"{row['id']}:{previous}"
    _close(verdict, current, size, previous, closed)
    if not anchor_seen:
        verdict.problems.append(f"event {anchor_id} of the anchor {head} is gone: the log was cut short")
    return verdict


def _close(verdict: Verdict, chain: int, size: int, head: str, closed: tuple[int, str] | None) -> None:
    """A chain walked to its end: its size and head, and chain 0 against its record."""
    if chain == 0 and closed is not None and (size, head) != closed and not (size == 0 and closed[0] == 0):
        verdict.problems.append(f"chain 0 (the log before its chains) has {size} events ending {head[:16]}…, "
                                f"but was closed at {closed[0]} ending {closed[1][:16]}…: "
                                + ("cut short" if size < closed[0] else "altered or added to after it was closed"))
    if size or chain:
        verdict.heads[chain] = (size, head)


def _plain(value: Any) -> Any:
    """A value as JSON holds it, the same whether just written or read back."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("the contact log stores aware datetimes only")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value
