"""The contact log: every decision, delivery and event, append-only and hash-chained,
on SQLite or PostgreSQL. What compliance reads to prove what was sent, when and why.

`ContactLog` is the door: the chain and its reads, nothing else. Behind it, one module
per part of the record: `kinds` (the log's words), `store` (the only writer: lock,
chain, claim), `chain` (the hash chain's canonical form), `facts` (rows → what `decide`
needs), `queries` (what the CLI and the server read), `search` (with `parties`, the
blind index of who a job names), `timeline`, `export`. The database below it is
`worker/db/`; each domain's book over it lives in its domain (`jobs/book.py`,
`messages/library.py`, `webhooks/outbox.py`, `records/book.py`, `users/`) and is built
by `wiring.books`.
"""

from worker.contact_log.export import EXPORT_FIELDS, for_export, to_json_line, write_csv
from worker.contact_log.facts import FactReads, Known
from worker.contact_log.kinds import Event
from worker.contact_log.queries import Delivery, ProviderDelivery, Queries
from worker.contact_log.search import Search
from worker.contact_log.store import Claim, Store, storable
from worker.contact_log.timeline import Timelines


class ContactLog(Store, Queries, Search, Timelines, FactReads):
    """The log on one database: its writes (`store.Store`, personal data through its
    `vault`), its reads (`Queries`, `Search`, `Timelines`) and the facts for `decide`
    (`FactReads`); safe to share between threads of a process."""


__all__ = ["Claim", "ContactLog", "Delivery", "EXPORT_FIELDS", "Event", "Known", "ProviderDelivery", "for_export",
           "storable", "to_json_line", "write_csv"]
