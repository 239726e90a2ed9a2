"""Events carry the hash chain (`worker.contact_log.chain`), so `dunning log verify` can prove
nothing was altered. Events written before this revision are linked here, in id order.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from worker.contact_log import chain as log_chain

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("digest", sa.String(64)))
    # The tables as they are at this revision, typed as the application reads them, so
    # JSON and times come back exactly as `verify` will see them.
    from worker.db.schema import UTCDateTime

    meta = sa.MetaData()
    events = sa.Table("events", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("digest", sa.String),
                      *(sa.Column(name, UTCDateTime if name.endswith("_at") else
                                  sa.JSON if name == "detail" else sa.Integer if name == "delivery_id" else sa.String)
                        for name in log_chain.EVENT_FIELDS))
    deliveries = sa.Table("deliveries", meta, sa.Column("id", sa.Integer, primary_key=True),
                          *(sa.Column(name, UTCDateTime if name.endswith("_at") else
                                      sa.JSON if name in ("reasons", "rules", "zones") else sa.String)
                            for name in log_chain.DELIVERY_FIELDS))
    query = (sa.select(events, *(deliveries.c[name].label(f"d_{name}") for name in log_chain.DELIVERY_FIELDS))
             .select_from(events.outerjoin(deliveries, events.c.delivery_id == deliveries.c.id)).order_by(events.c.id))
    bind = op.get_bind()
    link = events.update().where(events.c.id == sa.bindparam("event_id")).values(digest=sa.bindparam("new_digest"))
    previous, last_id = log_chain.GENESIS, 0
    while True:  # a page at a time, so a large log needs little memory
        page = bind.execute(query.where(events.c.id > last_id).limit(5000)).mappings().all()
        if not page:
            break
        linked = []
        for row in page:
            delivery = ({name: row[f"d_{name}"] for name in log_chain.DELIVERY_FIELDS}
                        if log_chain.covers_delivery(row) and row["d_delivery_key"] is not None else None)
            previous = log_chain.digest(previous, row, delivery)
            linked.append({"event_id": row["id"], "new_digest": previous})
        bind.execute(link, linked)
        last_id = page[-1]["id"]


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("digest")
