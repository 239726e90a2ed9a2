"""Jobs say when they reached the queue: intake reports a job accepted only once it is
queued, and a job recorded but never queued (Redis away, the process killed in between)
is found and queued by the worker's reconciler, or by the caller's retry.

`parent_id` ties a cadence step to the registration that planned it: steps are queued
(put in the agenda) with their registration, never alone.

Rows from before are taken as queued: intake queued them right after recording them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("parent_id", sa.String(200)))
    op.execute("UPDATE jobs SET queued_at = received_at")
    op.create_index("ix_jobs_unqueued", "jobs", ["queued_at", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_unqueued", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("parent_id")
        batch.drop_column("queued_at")
