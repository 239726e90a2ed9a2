"""The log as many chains, on PostgreSQL: every check-then-write the one global lock
used to guard still holds when its two sides run at once.

Each race holds one side's transaction open (its writes made, not committed) while the
other side runs in a thread. With the chains' locks the second side waits for the
commit, then sees the first; with the locks taken away (the `unlocked` cases: the
statements that take them, given nothing to take) the same race breaks the guarantee, which shows
each test would notice if the locking were lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import emptied
from sealed import MASTER_KEY
from sqlalchemy import text
from sqlalchemy.engine import Connection

from worker.contact_log import ContactLog, appending, chain
from worker.contact_log.kinds import ErasureStatus, Event, InvoiceStatus, Kind
from worker.contact_log.store import Claim
from worker.webhooks.outbox import Outbox

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
PHONE = "+8613800138000"


@pytest.fixture(params=["locked", "unlocked"])
def pg(request: pytest.FixtureRequest, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    log = ContactLog.open(postgres_url, MASTER_KEY).migrate()
    emptied(log)
    if request.param == "unlocked":
        monkeypatch.setattr(appending, "_LOCK", text("SELECT CAST(:wanted AS integer[])"))  # nothing locked
        monkeypatch.setattr(appending, "_APPEND", text(  # appended with no lock to take
            "SELECT dunning_append((CAST(:wanted AS integer[]))[0:0], CAST(:chains AS integer[]), "
            "CAST(:contents AS json), CAST(:indexes AS text[]))"))
        monkeypatch.setattr(appending, "_SHARE_CHAINS", text("SELECT :count"))
    yield log, request.param == "locked"
    log.engine.dispose()


def race(log: ContactLog, first: Callable[[Connection], Any], second: Callable[[], Any]) -> tuple[Any, bool]:
    """Run `first` in a transaction kept open while `second` runs in a thread: `second`'s
    result (or the error it raised), and whether it waited for `first` to commit."""
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = second()
        except Exception as error:  # an unlocked race may also end in a unique-key error
            outcome["value"] = error
        finished.set()

    try:
        with log.engine.begin() as conn:
            first(conn)
            thread = threading.Thread(target=run)
            thread.start()
            waited = not finished.wait(1.5)
    except Exception as error:  # unlocked, the first side's commit may clash with the second's
        thread.join(30)
        return error, False
    thread.join(30)
    return outcome["value"], waited


def claim_for(account: str, invoice: str, recipient: str = PHONE) -> Claim:
    return Claim(f"{invoice}/due_day#sms", f"{invoice}/due_day", invoice, account, "sms", recipient, "due_day",
                 None, None, ("a reason",), ("W-BIZ",), ("Asia/Shanghai",))


def apart(count: int) -> tuple[str, str]:
    """Two accounts whose events go to different chains (the cross-account races)."""
    first = "ACME-1"
    second = next(f"ACME-{n}" for n in range(2, 500)
                  if chain.of_account(f"ACME-{n}", count) != chain.of_account(first, count))
    return first, second


def test_a_payment_recorded_while_a_claim_is_prepared_stops_it(pg: Any) -> None:
    log, locked = pg
    known = log.known("ACME-1", "INV-1", "INV-1/due_day", NOW, [PHONE])

    def pay(conn: Connection) -> None:
        with log.locked(conn, accounts=["ACME-1"]):
            log.record(Event(Kind.INVOICE, InvoiceStatus.PAID, invoice_id="INV-1", account_id="ACME-1"), NOW, conn)

    result, waited = race(log, pay, lambda: log.claim(claim_for("ACME-1", "INV-1"), NOW, known=known))
    if locked:
        assert waited and result is None  # waited for the payment, saw it, claimed nothing
    else:
        assert result is not None  # claimed anyway (or one side tripped over the chain's position)


def test_an_opt_out_by_another_account_stops_a_claim_to_that_address(pg: Any) -> None:
    log, locked = pg
    ours, theirs = apart(log.chain_count())
    known = log.known(ours, "INV-1", "INV-1/due_day", NOW, [PHONE])

    def stop(conn: Connection) -> None:  # what `opt_out` does, kept open
        with log.locked(conn, accounts=[theirs], indexes=[log.vault.index(PHONE)]):
            log.suppress(theirs, PHONE, "sms", "STOP", NOW, conn=conn, by="twilio")

    result, waited = race(log, stop, lambda: log.claim(claim_for(ours, "INV-1"), NOW, known=known))
    if locked:
        assert waited and result is None
    else:
        assert not waited and result is not None and not isinstance(result, Exception)  # sent after the STOP


def test_a_second_stop_at_once_is_recorded_once(pg: Any) -> None:
    log, locked = pg
    ours, _ = apart(log.chain_count())

    def first_stop(conn: Connection) -> None:
        with log.locked(conn, accounts=[ours], indexes=[log.vault.index(PHONE)]):
            log.suppress(ours, PHONE, "sms", "STOP", NOW, conn=conn, by="twilio")

    again, waited = race(log, first_stop, lambda: log.opt_out(None, PHONE, "sms", "STOP", NOW, by="twilio"))
    if locked:
        assert waited and again is False  # one opt-out, one confirmation
    else:
        assert again is not False  # a second opt-out (or a clash on the chain's position)


def test_two_claims_for_one_debtor_at_once_are_seen_by_the_caps(pg: Any) -> None:
    log, locked = pg
    known = log.known("ACME-1", "INV-2", "INV-2/due_day", NOW, [PHONE])  # read before the other claim

    def other_invoice(conn: Connection) -> None:
        assert log.claim(claim_for("ACME-1", "INV-1"), NOW, conn=conn) is not None

    second, waited = race(log, other_invoice, lambda: log.claim(claim_for("ACME-1", "INV-2"), NOW, known=known))
    if locked:
        assert waited and second is None  # decided again, with the first contact counted
    else:
        assert second is not None


def test_an_erasure_recorded_while_a_claim_is_prepared_stops_it(pg: Any) -> None:
    log, locked = pg
    known = log.known("ACME-1", "INV-1", "INV-1/due_day", NOW, [PHONE])

    def erase(conn: Connection) -> None:  # the erasure's event, under its account's lock as `RecordBook.erase`
        with log.locked(conn, accounts=["ACME-1"]):
            log.record(Event(Kind.ERASURE, ErasureStatus.ERASED, account_id="ACME-1"), NOW, conn)

    result, waited = race(log, erase, lambda: log.claim(claim_for("ACME-1", "INV-1"), NOW, known=known))
    if locked:
        assert waited and result is None
    else:
        assert result is not None


def test_two_reclaims_at_once_count_two_attempts(pg: Any) -> None:
    log, locked = pg
    delivery = log.claim(claim_for("ACME-1", "INV-1"), NOW)
    assert delivery is not None
    attempts: list[int] = []

    def first(conn: Connection) -> None:
        attempts.append(log.reclaim(delivery.id, NOW, "no outcome", conn=conn))

    second, waited = race(log, first, lambda: log.reclaim(delivery.id, NOW, "no outcome"))
    if locked:
        assert waited and attempts == [2] and second == 3  # each contact counted once, in order
    else:
        assert second == 2 or isinstance(second, Exception)  # counted the same attempt twice, or clashed


def test_an_invoice_is_escalated_once_when_two_escalate_at_once(pg: Any) -> None:
    log, locked = pg

    def first(conn: Connection) -> None:
        assert log.escalate("INV-1/due_day", "INV-1", "ACME-1", ["no answer"], NOW, conn=conn)

    again, waited = race(log, first, lambda: log.escalate("INV-1/final", "INV-1", "ACME-1", ["no answer"], NOW))
    if locked:
        assert waited and again is False
    else:
        assert again is not False  # escalated twice (or the chain's position clashed)


def test_the_webhook_cursor_never_passes_an_event_still_being_written(pg: Any) -> None:
    log, locked = pg
    slow, fast = apart(log.chain_count())
    outbox, url = Outbox(log), "https://billing.example/hooks"
    outbox.collect(url, NOW)  # the endpoint starts at the head

    def skip(account: str) -> Event:
        return Event(Kind.DECISION, "skip", job_id=f"{account}/due_day", invoice_id=f"{account}-INV",
                     account_id=account, detail={"action": "skip", "reasons": ["paid"]})

    def slow_writer(conn: Connection) -> None:  # takes its id first, commits last
        log.record(skip(slow), NOW, conn)
        conn.execute(text("SELECT 1"))  # more work in the transaction: its event is inserted by now
        log.record(skip(fast), NOW)  # another chain: a higher id, committed at once

    made, waited = race(log, slow_writer, lambda: outbox.collect(url, NOW))
    made += outbox.collect(url, NOW)
    if locked:
        assert waited and made == 2
    else:
        assert made == 1  # the cursor moved past the slow writer's event: its webhook is lost


def test_writers_of_different_chains_do_not_wait_for_each_other(pg: Any) -> None:
    log, locked = pg
    ours, theirs = apart(log.chain_count())

    def hold(conn: Connection) -> None:
        log.record(Event(Kind.INVOICE, InvoiceStatus.PAID, invoice_id="INV-1", account_id=ours), NOW, conn)

    _, waited = race(log, hold, lambda: log.record(Event(Kind.INVOICE, InvoiceStatus.PAID, invoice_id="INV-9",
                                                          account_id=theirs), NOW))
    assert not waited
    verdict = log.verify()
    assert verdict.intact and verdict.events == 2 and len([k for k in verdict.heads if k]) == 2
