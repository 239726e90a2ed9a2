"""The hot reads run on the DBAPI cursor (`worker.db.prepared`) answer exactly what
SQLAlchemy's `Connection.execute` answers for the same statement — values, types
(aware datetimes, JSON as dicts) and order — on both databases, for lists of every
length; and, inside a transaction, they see what it wrote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy.exc
from conftest import emptied
from sealed import MASTER_KEY
from sqlalchemy import bindparam, select, text

from worker.contact_log import ContactLog, appending, facts
from worker.contact_log.kinds import Event, InvoiceStatus, Kind, SuppressionStatus
from worker.contact_log.store import Claim
from worker.db.prepared import Prepared
from worker.db.schema import events

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
PHONE, EMAIL = "+8613800138000", "zhang.wei@example.com"


def claim_for(account: str, invoice: str) -> Claim:
    return Claim(f"{invoice}/due_day#sms", f"{invoice}/due_day", invoice, account, "sms", PHONE, "due_day",
                 None, None, ("a reason",), ("W-BIZ",), ("Asia/Shanghai",))


def a_history(log: ContactLog) -> None:
    log.claim(claim_for("ACME-1", "INV-1"), NOW - timedelta(days=2))
    log.record(Event(Kind.INVOICE, InvoiceStatus.PAYMENT, invoice_id="INV-1", account_id="ACME-1",
                     detail={"amount": "100.00", "reference": "第一笔"}), NOW - timedelta(days=1))
    log.record(Event(Kind.SUPPRESSION, SuppressionStatus.SUPPRESSED, account_id="ACME-2", address=EMAIL,
                     detail={"channel": "email"}), NOW)
    log.record(Event(Kind.INVOICE, InvoiceStatus.DISPUTED, invoice_id="INV-9", account_id="ACME-3"), NOW)


def test_prepared_reads_answer_what_sqlalchemy_answers(log: ContactLog) -> None:
    a_history(log)
    indexes = log.vault.indexes([PHONE, EMAIL])
    with log.engine.connect() as conn:
        for addresses in ([], indexes[:1], indexes, [*indexes, "not-an-index"]):
            cases: list[tuple[Prepared, dict[str, Any]]] = [
                (facts._HAPPENINGS, {"account_id": "ACME-1", "invoice_id": "INV-9", "addresses": addresses}),
                (facts._NEWER_FACTS, {"account_id": "ACME-1", "invoice_id": "INV-9", "mark": 0, "address_mark": 0,
                                      "addresses": addresses}),
            ]
            cases += [(facts._ATTEMPTS, {"account_id": "ACME-1", "since": NOW - timedelta(days=40)}),
                      (facts._ACCOUNT_KEY, {"key_account": "ACME-1"}),
                      (appending._HEADS, {"chains": list(range(1, log.chain_count() + 1))})]
            for prepared, params in cases:
                expected = conn.execute(prepared.statement, params).all()
                got = prepared.rows(conn, params)
                assert [tuple(row) for row in got] == [tuple(row) for row in expected]
                assert [list(map(type, row)) for row in got] == [list(map(type, row)) for row in expected]
                named = not any(key.startswith("anon_") for key in expected[0]._fields) if expected else True
                if named:  # SQLAlchemy's names for unnamed columns are its own (anon_1...)
                    assert [row._mapping for row in got] == [dict(row._mapping) for row in expected]
        happenings = facts._HAPPENINGS.rows(conn, {"account_id": "ACME-1", "invoice_id": "-", "addresses": []})
    assert len(happenings) == 1 and happenings[0].detail == {"amount": "100.00", "reference": "第一笔"}
    assert happenings[0].occurred_at == NOW - timedelta(days=1) and happenings[0].occurred_at.tzinfo is not None


def test_a_prepared_read_with_an_empty_list_matches_nothing_by_it(log: ContactLog) -> None:
    a_history(log)
    by_address = Prepared(select(events.c.id).where(events.c.address_index.in_(bindparam("marks", expanding=True))),
                          lists=["marks"])
    with log.engine.connect() as conn:
        assert by_address.rows(conn, {"marks": []}) == []
        assert len(by_address.rows(conn, {"marks": log.vault.indexes([EMAIL])})) == 1


def test_a_claim_in_a_group_transaction_sees_a_payment_written_earlier_in_it(log: ContactLog) -> None:
    """The group commit puts many reminders' writes in one transaction: a payment appended
    by an earlier write, still waiting to be inserted, is news to a claim after it."""
    known = log.known("ACME-1", "INV-1", "INV-1/due_day", NOW, [PHONE])
    with log.engine.begin() as conn, log.locked(conn, accounts=["ACME-1"], indexes=known.addresses):
        # the claim's locks held already: no statement of its own runs before its check
        log.record(Event(Kind.INVOICE, InvoiceStatus.PAID, invoice_id="INV-1", account_id="ACME-1"), NOW, conn)
        assert log.claim(claim_for("ACME-1", "INV-1"), NOW, known=known, conn=conn) is None
    other = log.known("ACME-5", "INV-5", "INV-5/due_day", NOW, [PHONE])
    with log.engine.begin() as conn:
        log.record(Event(Kind.INVOICE, InvoiceStatus.PAID, invoice_id="INV-2", account_id="ACME-2"), NOW, conn)
        assert log.claim(claim_for("ACME-5", "INV-5"), NOW, known=other, conn=conn) is not None  # not its news


def test_a_lost_connection_is_the_outage_sqlalchemy_would_report(postgres_url: str) -> None:
    """A dropped database connection reaches the worker as `sqlalchemy.exc.OperationalError`
    (what it retries later: `broker.RECOVERABLE`), and the dead connection leaves the pool."""
    log = ContactLog.open(postgres_url, MASTER_KEY).migrate()
    emptied(log)
    try:
        params = {"account_id": "ACME-1", "invoice_id": "INV-1", "addresses": []}
        with log.engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            with log.engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(sqlalchemy.exc.OperationalError) as raised:
                facts._HAPPENINGS.rows(conn, params)
            assert raised.value.connection_invalidated and conn.invalidated
        with log.engine.connect() as conn:  # the pool gives a live one
            assert facts._HAPPENINGS.rows(conn, params) == []
    finally:
        log.engine.dispose()



def test_an_insert_on_the_cursor_stores_what_sqlalchemy_stores(log: ContactLog) -> None:
    """Dates (aware, UTC) and JSON go in as SQLAlchemy would put them; ON CONFLICT DO
    NOTHING answers None rather than raising."""
    from worker.contact_log.store import insert_or_nothing
    from worker.db.prepared import Inserting
    from worker.db.schema import deliveries

    columns = [column.key for column in deliveries.c if column.key != "id"]
    row = {"delivery_key": "K-1", "job_id": "J", "invoice_id": "I", "account_id": "A", "channel": "email",
           "recipient": "sealed:x", "recipient_index": None, "stage": "due_day", "template": None,
           "template_version": None, "reasons": ["一个理由"], "rules": ["W-BIZ"], "zones": ["Asia/Shanghai"],
           "claimed_at": datetime(2026, 12, 3, 10, 0, tzinfo=UTC)}
    statement = insert_or_nothing(log.engine.dialect.name, deliveries, "delivery_key")
    with log.engine.begin() as conn:
        ours = Inserting(statement, columns).one(conn, row)
        theirs = conn.execute(statement, {**row, "delivery_key": "K-2"}).scalar()
        assert Inserting(statement, columns).one(conn, row) is None  # K-1 again: nothing, no error
    with log.engine.connect() as conn:
        found = {r.delivery_key: r for r in conn.execute(select(deliveries))}
    assert ours is not None and theirs == ours + 1
    assert {k: v for k, v in found["K-1"]._mapping.items() if k not in ("id", "delivery_key")} == \
        {k: v for k, v in found["K-2"]._mapping.items() if k not in ("id", "delivery_key")}
    assert found["K-1"].claimed_at == row["claimed_at"] and found["K-1"].reasons == ["一个理由"]
