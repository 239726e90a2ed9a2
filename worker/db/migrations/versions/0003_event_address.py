"""Events name the address they are about (opt-outs, invalid addresses), indexed, so an
opt-out given without an account still stops every message to that address.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("address", sa.String(320)))
    op.create_index("ix_events_address", "events", ["address", "id"])
    op.execute("UPDATE events SET address = json_extract(detail, '$.address') WHERE kind = 'suppression'"
                if op.get_bind().dialect.name == "sqlite" else
                "UPDATE events SET address = detail->>'address' WHERE kind = 'suppression'")


def downgrade() -> None:
    op.drop_index("ix_events_address", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("address")
