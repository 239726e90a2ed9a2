"""The one database, below the chain: its tables (`schema.py`, all in one module — the
vault must see every personal column, and erasure spans six tables in one
transaction), the one door to personal data at rest (`vault.py` over `sealing.py`),
group commit (`writer.py`) and the one Alembic history (`migrations/`).

The contact log (`worker.contact_log`) is the chain kept in it; each domain's book
(jobs, templates, webhooks, people and keys, records) keeps its rows here too."""
