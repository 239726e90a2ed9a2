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
        op.execute(APPEND)
    size = int(bind.execute(sa.text("SELECT count(*) FROM events")).scalar_one())
    head = bind.execute(sa.text("SELECT digest FROM events ORDER BY id DESC LIMIT 1")).scalar()
    op.bulk_insert(chains, [{"chain": 0, "size": size, "head": head or log_chain.GENESIS},
                            *({"chain": k, "size": None, "head": None} for k in range(1, count + 1))])


# A batch of events joins its chains in one round trip: the chains' locks taken in
# ascending order (advisory, (727003, chain): held in memory until the transaction ends,
# re-entrant), each chain's head read after them (each statement of a volatile PL/pgSQL
# function takes a new snapshot, so the heads are those the holders before committed),
# each event linked as `worker.contact_log.chain.link` links it (SHA-256 of the previous
# digest, a newline and its canonical content, computed by the caller before any
# lock), and every row inserted at its chain's next position — read from that same
# canonical content (every covered column is in it; the blind indexes, outside the
# chain, come beside it), so the caller serializes each event once. Returns when it held the
# locks (seconds since the epoch), for the time they are held (`bench/log.py`).
APPEND = """
CREATE OR REPLACE FUNCTION dunning_append(wanted integer[], chain_of integer[], bodies json,
                                          address_indexes text[])
RETURNS double precision LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  contents text[] := ARRAY(SELECT json_array_elements_text(bodies));
  sizes bigint[] := '{}';
  heads text[] := '{}';
  positions bigint[] := '{}';
  digests text[] := '{}';
  k integer;
  last_position bigint;
  last_digest text;
  locked_at double precision;
BEGIN
  PERFORM pg_advisory_xact_lock(727003, w.k) FROM unnest(wanted) WITH ORDINALITY AS w(k, n) ORDER BY w.n;
  locked_at := extract(epoch FROM clock_timestamp());
  FOR i IN 1 .. coalesce(array_length(chain_of, 1), 0) LOOP
    k := chain_of[i];
    IF sizes[k] IS NULL THEN
      SELECT e.position, e.digest INTO last_position, last_digest
        FROM events e WHERE e.chain = k ORDER BY e.position DESC LIMIT 1;
      sizes[k] := coalesce(last_position, 0);
      heads[k] := coalesce(last_digest, repeat('0', 64));
    END IF;
    sizes[k] := sizes[k] + 1;
    heads[k] := encode(sha256(convert_to(heads[k] || E'\\n' || contents[i], 'UTF8')), 'hex');
    positions[i] := sizes[k];
    digests[i] := heads[k];
  END LOOP;
  INSERT INTO events (delivery_id, job_id, invoice_id, account_id, kind, status, provider, provider_message_id,
                      error_code, error_text, detail, occurred_at, recorded_at, address, address_index,
                      chain, position, digest)
  SELECT r.delivery_id, r.job_id, r.invoice_id, r.account_id, r.kind, r.status, r.provider, r.provider_message_id,
         r.error_code, r.error_text, r.detail, r.occurred_at, r.recorded_at, r.address, address_indexes[c.n],
         chain_of[c.n], positions[c.n], digests[c.n]
    FROM unnest(contents) WITH ORDINALITY AS c(body, n), json_populate_record(NULL::events, c.body::json) AS r
   ORDER BY c.n;
  RETURN locked_at;
END $$
"""


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION dunning_append(integer[], integer[], json, text[])")
    op.drop_table("checkpoints")
    op.drop_table("chains")
    op.drop_index("ux_events_chain_position", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("position")
        batch.drop_column("chain")
