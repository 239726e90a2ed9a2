"""Who a job names, as blind indexes (issue 22): a person is found by any address,
number, name or company their jobs gave, not only by those contacted. Accounts whose
jobs came before this revision are marked "pending"; `parties.mark_pending` indexes
them (it needs the master key, which migrations never have) when `worker` or `serve`
starts.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "party_marks",
        sa.Column("mark", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("mark", "kind", "account_id"),
    )
    op.create_index("ix_party_marks_account", "party_marks", ["account_id"])
    op.execute("INSERT INTO party_marks (mark, kind, account_id) "
               "SELECT DISTINCT '', 'pending', account_id FROM jobs WHERE payload <> '[erased]'")


def downgrade() -> None:
    op.drop_index("ix_party_marks_account", "party_marks")
    op.drop_table("party_marks")
