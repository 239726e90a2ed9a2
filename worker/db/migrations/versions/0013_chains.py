"""The contact log as many chains (issue 24): every event from now on goes to one of K
chains, by its account (`worker.contact_log.chain`), at a gapless position of its own,
so writers for different accounts no longer wait for one lock; and the signed
checkpoints of every chain's head (`worker.contact_log.checkpoints`).

The single chain written before this revision is kept as it is, not rewritten: it is
chain 0, closed here with its size and its head, and verifies as before. K is fixed
now, for this log's life (`DUNNING_LOG_CHAINS` when the log is created, default 64).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import context, op

from worker.contact_log import chain as log_chain
from worker.db.schema import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    count = int(context.config.attributes.get("chains") or log_chain.DEFAULT_CHAINS)
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("chain", sa.Integer))
        batch.add_column(sa.Column("position", sa.BigInteger))
    op.create_index("ux_events_chain_position", "events", ["chain", "position"], unique=True)
    chains = op.create_table(
        "chains",
        sa.Column("chain", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger),
        sa.Column("head", sa.String(64)),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("made_at", UTCDateTime, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(LOCK_CHAINS)
    size = int(bind.execute(sa.text("SELECT count(*) FROM events")).scalar_one())
    head = bind.execute(sa.text("SELECT digest FROM events ORDER BY id DESC LIMIT 1")).scalar()
    op.bulk_insert(chains, [{"chain": 0, "size": size, "head": head or log_chain.GENESIS},
                            *({"chain": k, "size": None, "head": None} for k in range(1, count + 1))])


# Lock chains in ascending order (the caller sorts `wanted`) and read their heads, in one
# round trip: in PL/pgSQL each statement of a volatile function takes a new snapshot, so
# the heads are read after the locks are held (one statement with both would read them
# as they were before it waited). The locks are advisory, (727003, chain): held in
# memory until the transaction ends, where locking the chains' rows would write them.
LOCK_CHAINS = """
CREATE OR REPLACE FUNCTION dunning_lock_chains(wanted integer[])
RETURNS TABLE(locked_chain integer, last_position bigint, last_digest varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(727003, w.k) FROM unnest(wanted) WITH ORDINALITY AS w(k, n) ORDER BY w.n;
  RETURN QUERY SELECT w.k, h.position, h.digest FROM unnest(wanted) AS w(k)
    LEFT JOIN LATERAL (SELECT events.position, events.digest FROM events WHERE events.chain = w.k
                       ORDER BY events.position DESC LIMIT 1) h ON true;
END $$
"""


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION dunning_lock_chains(integer[])")
    op.drop_table("checkpoints")
    op.drop_table("chains")
    op.drop_index("ux_events_chain_position", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("position")
        batch.drop_column("chain")
