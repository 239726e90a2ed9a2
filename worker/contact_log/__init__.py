"""The contact log: every decision, delivery and event, append-only and hash-chained,
on SQLite or PostgreSQL. What compliance reads to prove what was sent, when and why.

`ContactLog` is the door. Behind it, one module per part of the record: `kinds` (the
log's words), `store` (the only writer: lock, chain, claim), `chain` (the hash chain's
canonical form), `facts` (rows → what `decide` needs), `queries` (what the CLI and the
server read), `search`, `timeline`, `export`; and books still mixed in, on their way
to their own rooms (issue 23): `jobs`
(intake's book),
`parties`. The database below it is `worker/db/`; who may use dunning, `worker/users/`.
"""

from worker.contact_log.export import EXPORT_FIELDS, for_export, to_json_line
from worker.contact_log.facts import FactReads, Known
from worker.contact_log.jobs import JobBook, JobRow
from worker.contact_log.kinds import Event
from worker.contact_log.queries import Delivery, ProviderDelivery, Queries
from worker.contact_log.search import Search
from worker.contact_log.store import Claim, Store, storable
from worker.contact_log.timeline import Timelines
from worker.db.schema import UTCDateTime, jobs


class ContactLog(Store, JobBook, Queries, Search, Timelines, FactReads):
    """The log on one database: its writes (`store.Store`, personal data through its
    `vault`; ),
    intake's book of jobs (`JobBook`), its
    reads (`Queries`) and the facts for `decide` (`FactReads`); safe to share between
    threads of a process."""


__all__ = ["Claim", "ContactLog", "Delivery", "EXPORT_FIELDS", "Event", "JobRow", "Known",
           "ProviderDelivery", "UTCDateTime",
           "for_export", "jobs", "storable", "to_json_line"]
