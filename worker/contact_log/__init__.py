"""The contact log: every decision, delivery and event, append-only and hash-chained,
on SQLite or PostgreSQL. What compliance reads to prove what was sent, when and why.

`ContactLog` is the door; the modules behind it each hold one part of the record
(see ARCHITECTURE.md).
"""

from worker.contact_log.store import (
    EXPORT_FIELDS,
    Claim,
    ContactLog,
    Delivery,
    JobRow,
    Known,
    ProviderDelivery,
    UTCDateTime,
    for_export,
    jobs,
    storable,
    to_json_line,
)

__all__ = ["EXPORT_FIELDS", "Claim", "ContactLog", "Delivery", "JobRow", "Known", "ProviderDelivery", "UTCDateTime",
           "for_export", "jobs", "storable", "to_json_line"]
