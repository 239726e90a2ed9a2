"""The console's people (argon2 password hashes), their sessions (the token's SHA-256),
recent failed sign-ins (to slow the next ones), and indexes for searching by address and
for the latest event of a kind.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UTCDateTime = sa.DateTime(timezone=True)  # what schema.UTCDateTime stores


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("password_changed_at", UTCDateTime, nullable=False),
        sa.Column("disabled_at", UTCDateTime),
    )
    op.create_table(
        "sessions",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(100), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
    )
    op.create_index("ix_sessions_user", "sessions", ["user_name"])
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_name", sa.String(100), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_sign_in_failures_user", "sign_in_failures", ["user_name", "at"])
    op.create_index("ix_sign_in_failures_address", "sign_in_failures", ["address", "at"])
    op.create_index("ix_deliveries_recipient", "deliveries", ["recipient"])
    op.create_index("ix_events_kind", "events", ["kind", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_kind", "events")
    op.drop_index("ix_deliveries_recipient", "deliveries")
    op.drop_index("ix_sign_in_failures_address", "sign_in_failures")
    op.drop_index("ix_sign_in_failures_user", "sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_index("ix_sessions_user", "sessions")
    op.drop_table("sessions")
    op.drop_table("users")
