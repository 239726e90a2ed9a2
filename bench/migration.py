"""How long the newest migration holds the contact log's events table on PostgreSQL, by
log size: what writers wait during step 1 of a rolling upgrade (README, "Upgrading").

    .venv/bin/python bench/migration.py [SIZE ...]     # default: 100000 1000000 3000000

A throwaway cluster (fsync off, as the other benches); events made in SQL across 64
chains, 20,000 accounts and 50,000 deliveries (not linked: the migration builds
indexes, it does not read digests); the migration timed from the revision before it,
then undone for the next size.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from worker.db import migrations  # noqa: E402
from worker.local.postgres import Postgres  # noqa: E402

VERSIONS = ROOT / "worker" / "db" / "migrations" / "versions"
FILL = text("""
    INSERT INTO events (delivery_id, job_id, invoice_id, account_id, kind, status, occurred_at, recorded_at,
                        digest, chain, position)
    SELECT g % 50000, 'J-' || g, 'INV-' || g, 'ACC-' || (g % 20000), 'delivery',
           (ARRAY['claimed', 'sent', 'delivered'])[1 + g % 3], now(), now(), md5(g::text) || md5(g::text),
           1 + g % 64, g
    FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g""")


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [100_000, 1_000_000, 3_000_000]
    newest = sorted(VERSIONS.glob("0*.py"))[-1]
    before = next(line.split("=")[1].strip().strip('"') for line in newest.read_text().splitlines()
                  if line.startswith("down_revision"))
    pg = Postgres(Path(tempfile.mkdtemp(prefix="dunning-migration-"))).start()
    try:
        engine = create_engine(pg.url)
        migrations.upgrade(engine, before)
        made = 0
        print(f"migration {newest.name} on PostgreSQL, from {before}")
        for size in sorted(sizes):
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL session_replication_role = replica"))  # no deliveries rows needed
                conn.execute(FILL, {"first": made + 1, "last": size})
                conn.execute(text("ANALYZE events"))
            made = max(made, size)
            began = time.monotonic()
            migrations.upgrade(engine)
            print(f"{made:>12,} events: {time.monotonic() - began:6.2f} s", flush=True)
            cfg = migrations.config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, before)
        engine.dispose()
    finally:
        pg.ctl("stop", "immediate")
        shutil.rmtree(pg.base, ignore_errors=True)


if __name__ == "__main__":
    main()
