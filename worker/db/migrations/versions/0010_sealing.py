"""Personal data sealed at rest (issue 14): the data keys (wrapped by the master key),
blind indexes beside the sealed address columns (outside the chain, so erasure can
clear them), room for ciphertexts in the address columns, and the account a dead letter
is about (so erasure finds it).

Rows written before this revision keep their plain values (the chain covers them as
written); `Vault.index_legacy` gives them blind indexes when a worker first starts.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(200), unique=True),
        sa.Column("address_index", sa.String(64), unique=True),
        sa.Column("wrapped", sa.Text, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":  # SQLite's columns hold any length already
        op.alter_column("deliveries", "recipient", type_=sa.Text, existing_nullable=False)
        op.alter_column("events", "address", type_=sa.Text)
    op.add_column("deliveries", sa.Column("recipient_index", sa.String(64)))
    op.add_column("events", sa.Column("address_index", sa.String(64)))
    op.drop_index("ix_deliveries_recipient", "deliveries")
    op.create_index("ix_deliveries_recipient_index", "deliveries", ["recipient_index"])
    op.drop_index("ix_events_address", "events")
    op.create_index("ix_events_address_index", "events", ["address_index", "id"])
    op.add_column("dead_letters", sa.Column("account_id", sa.String(200)))
    op.create_index("ix_dead_letters_account", "dead_letters", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_account", "dead_letters")
    op.drop_column("dead_letters", "account_id")
    op.drop_index("ix_events_address_index", "events")
    op.create_index("ix_events_address", "events", ["address", "id"])
    op.drop_index("ix_deliveries_recipient_index", "deliveries")
    op.create_index("ix_deliveries_recipient", "deliveries", ["recipient"])
    with op.batch_alter_table("events") as table:
        table.drop_column("address_index")
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("recipient_index")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("events", "address", type_=sa.String(320))
        op.alter_column("deliveries", "recipient", type_=sa.String(320), existing_nullable=False)
    op.drop_table("data_keys")
