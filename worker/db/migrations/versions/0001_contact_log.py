"""The contact log: deliveries, events, template versions, dead letters.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_key", sa.String(300), nullable=False, unique=True),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("invoice_id", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("stage", sa.String(64)),
        sa.Column("template", sa.String(200)),
        sa.Column("template_version", sa.String(64)),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("rules", sa.JSON, nullable=False),
        sa.Column("zones", sa.JSON, nullable=False),
        sa.Column("claimed_at", Time, nullable=False),
    )
    op.create_index("ix_deliveries_account_time", "deliveries", ["account_id", "claimed_at"])
    op.create_index("ix_deliveries_invoice_time", "deliveries", ["invoice_id", "claimed_at"])
    op.create_index("ix_deliveries_job", "deliveries", ["job_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id")),
        sa.Column("job_id", sa.String(200)),
        sa.Column("invoice_id", sa.String(200)),
        sa.Column("account_id", sa.String(200)),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("provider", sa.String(20)),
        sa.Column("provider_message_id", sa.String(300)),
        sa.Column("error_code", sa.String(20)),
        sa.Column("error_text", sa.Text),
        sa.Column("detail", sa.JSON),
        sa.Column("occurred_at", Time, nullable=False),
        sa.Column("recorded_at", Time, nullable=False),
    )
    op.create_index("ix_events_delivery", "events", ["delivery_id", "id"])
    op.create_index("ix_events_provider_id", "events", ["provider_message_id"])
    op.create_index("ix_events_invoice_time", "events", ["invoice_id", "occurred_at"])
    op.create_index("ix_events_account_time", "events", ["account_id", "occurred_at"])
    op.create_table(
        "template_versions",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("first_used_at", Time, nullable=False),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(200)),
        sa.Column("origin", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", Time, nullable=False),
    )
    op.create_index("ix_dead_letters_time", "dead_letters", ["received_at"])


def downgrade() -> None:
    for table in ("dead_letters", "template_versions", "events", "deliveries"):
        op.drop_table(table)
