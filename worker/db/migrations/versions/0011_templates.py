"""The operator's templates in the log (issue 15): every version of every template, so
each worker host renders the same published version and history keeps who wrote,
published and approved each.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UTCDateTime = sa.DateTime(timezone=True)  # what schema.UTCDateTime stores


def upgrade() -> None:
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("published_by", sa.String(100)),
        sa.Column("published_at", UTCDateTime),
        sa.Column("approved_by", sa.String(100)),
        sa.Column("approved_at", UTCDateTime),
        sa.Column("live_seq", sa.Integer, unique=True),
    )
    op.create_index("ix_templates_name", "templates", ["name", "id"])


def downgrade() -> None:
    op.drop_index("ix_templates_name", "templates")
    op.drop_table("templates")
