"""Webhooks to the billing system: the outbox (one row per event to report, collected
from the log) and each endpoint's place in the log and whether it answered 410 Gone.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

UTCDateTime = sa.DateTime(timezone=True)  # what schema.UTCDateTime stores

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("invoice_id", sa.String(200)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.String(200)),
    )
    op.create_index("ix_webhooks_due", "webhooks", ["state", "next_attempt_at"])
    op.create_index("ix_webhooks_invoice", "webhooks", ["invoice_id", "state", "event_id"])
    op.create_table(
        "webhook_endpoints",
        sa.Column("url_hash", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("cursor", sa.Integer, nullable=False),
        sa.Column("stopped_at", UTCDateTime),
        sa.Column("stopped_by", sa.String(100)),
    )


def downgrade() -> None:
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_webhooks_invoice", "webhooks")
    op.drop_index("ix_webhooks_due", "webhooks")
    op.drop_table("webhooks")
