"""Claims found by their account and delivery, not by walking every claim (issue 25).

A reminder's read of the facts asks for its account's newest claim, and for each
delivery how many claims it had. Both named the kind and status ("delivery",
"claimed"), and the planner answered them down `ix_events_kind` — every claim in the
log, newest first, until one of the account's — so the read grew with the log: a
third of a worker's time at 10,000 reminders, and more with every day kept. Indexes
that begin with the account and the delivery make both a lookup.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Workers write while this runs (a rolling upgrade). Its steps lock events ever
        # harder — SHARE to build an index, ACCESS EXCLUSIVE to drop one — and a writer
        # that read events between them deadlocked with it (tests/test_upgrades.py). The
        # strongest first: writes wait for the builds, then go on.
        op.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    op.create_index("ix_events_account_kind", "events", ["account_id", "kind", "status", "id"])
    op.drop_index("ix_events_delivery", "events")
    op.create_index("ix_events_delivery", "events", ["delivery_id", "kind", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_delivery", "events")
    op.create_index("ix_events_delivery", "events", ["delivery_id", "id"])
    op.drop_index("ix_events_account_kind", "events")
