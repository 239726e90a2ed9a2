"""The words of the contact log, defined once: event kinds and the statuses each kind
takes. Writers and readers use these names, never loose strings; the values are the
strings stored in the `events` table (and covered by the hash chain), so they never
change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    DECISION = "decision"  # what `decide` said: status is the action (send, defer, skip, escalate)
    DELIVERY = "delivery"  # a delivery's status: ours (`DeliveryStatus`) or a provider's callback status
    CALLBACK = "callback"  # a provider callback not applied (unknown SID, a repeat, a step back)
    INVOICE = "invoice"  # what billing said about an invoice (`InvoiceStatus`)
    ACCOUNT = "account"  # about the person (`AccountStatus`)
    SUPPRESSION = "suppression"  # an address or a medium not to be contacted (`SuppressionStatus`)
    ESCALATION = "escalation"  # the supervisor's notice of an escalated case (`NoticeStatus`)
    INBOUND = "inbound"  # a text the debtor sent (status: its intent)
    CADENCE = "cadence"  # an invoice registered: its steps planned (status: registered)
    KEY = "key"  # an API key made or revoked (`KeyStatus`): who may call the billing API
    JOB = "job"  # a job cancelled by the billing system (status: cancelled)
    WEBHOOK = "webhook"  # one attempt to tell the billing system something (`WebhookStatus`)
    USER = "user"  # a person of the console added, disabled, given a new password (`UserStatus`)
    ACCESS = "access"  # who signed in or out, or looked at or exported whose record (`AccessStatus`)
    HOLD = "hold"  # a legal hold placed on or released from an account or an invoice (`HoldStatus`)
    ERASURE = "erasure"  # a request to erase an account's personal data, refused or done (`ErasureStatus`)
    MASTER_KEY = "master-key"  # the master key rotated: every data key re-wrapped (status: rotated)
    TEMPLATE = "template"  # a template version imported, published or approved (`TemplateStatus`)


class DeliveryStatus(StrEnum):
    """Our statuses of a delivery; provider callbacks add theirs (`delivered`, `no-answer`...)."""

    CLAIMED = "claimed"  # written before the provider is called
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the provider may or may not have it: never resent blindly
    RETRY = "retry"  # a transient failure, tried again later


class InvoiceStatus(StrEnum):
    PAYMENT = "payment"  # a part payment (detail: amount)
    PAID = "paid"
    WRITTEN_OFF = "written-off"
    DISPUTED = "disputed"
    RESOLVED = "resolved"  # the dispute is over
    PROMISED = "promised"  # detail: until
    ESCALATED = "escalated"  # handed to a person
    PAUSED = "paused"  # an operator paused reminders (detail: by, reason) until resumed
    RESUMED = "resumed"


class AccountStatus(StrEnum):
    CEASED = "ceased"
    PAUSED = "paused"  # an operator paused reminders to the whole account (detail: by, reason) until resumed
    RESUMED = "resumed"


class SuppressionStatus(StrEnum):
    SUPPRESSED = "suppressed"
    RESUBSCRIBED = "resubscribed"


class NoticeStatus(StrEnum):
    NOTIFIED = "notified"
    NOT_NOTIFIED = "not-notified"
    RETRY = "retry"


class CaseStatus(StrEnum):
    """An escalated case worked by an operator (kind `escalation`; detail: `by`, and for
    a closing its `outcome` and `note`)."""

    ASSIGNED = "assigned"
    CLOSED = "closed"


class CaseOutcome(StrEnum):
    """How an operator closed an escalated case."""

    PROMISED = "promised"  # reached, promised to pay (detail: until; a promise event is recorded too)
    PAID = "paid"
    DISPUTED = "disputed"
    WRITTEN_OFF = "written-off"
    OTHER = "other"


class KeyStatus(StrEnum):
    CREATED = "created"
    REVOKED = "revoked"


class JobStatus(StrEnum):
    CANCELLED = "cancelled"


class WebhookStatus(StrEnum):
    """What became of one attempt to deliver a webhook (detail: message id, type, attempt, HTTP status)."""

    DELIVERED = "delivered"  # a 2xx answer
    RETRY = "retry"  # another answer or none: tried again later
    FAILED = "failed"  # still failing when its retries ran out: given up
    STOPPED = "stopped"  # the endpoint answered 410 Gone: nothing more is sent to it
    RESUMED = "resumed"  # an operator sent to a stopped endpoint again (`dunning webhooks resume`)


class UserStatus(StrEnum):
    ADDED = "added"
    DISABLED = "disabled"
    PASSWORD = "password-changed"


class AccessStatus(StrEnum):
    """detail: who (`user`), from where (`address`), and what was looked at."""

    SIGNED_IN = "signed-in"
    SIGNED_OUT = "signed-out"
    FAILED = "sign-in-failed"
    VIEWED = "viewed"  # a person's record: an account, an invoice, a message
    UNMASKED = "unmasked"  # asked to see addresses in full
    EXPORTED = "exported"
    VERIFIED = "verified"  # the chain recomputed


class HoldStatus(StrEnum):
    """detail: who (`by`) and why (`reason`)."""

    PLACED = "placed"
    RELEASED = "released"


class TemplateStatus(StrEnum):
    """detail: the template (`name`), its version's number (`id`) and SHA-256 (`version`), who (`by`)."""

    IMPORTED = "imported"  # first versions from a folder: live at once (nothing was live before)
    PUBLISHED = "published"  # put forward by its author: live once approved (or at once with one approval)
    APPROVED = "approved"  # a second person agreed: live from now


class ErasureStatus(StrEnum):
    """detail: who (`by`), why (`reason`); refused: until when and by which rule; erased:
    what was destroyed and removed."""

    REFUSED = "refused"  # within retention or under a hold: kept (and contact ceased)
    ERASED = "erased"  # the account's keys destroyed: its personal data unreadable for good


# The events that change what `decide` may do (an erasure: that jobs from before it are dropped).
FACT_KINDS = (Kind.INVOICE, Kind.ACCOUNT, Kind.SUPPRESSION, Kind.JOB, Kind.ERASURE)
CLOSING = (InvoiceStatus.PAID, InvoiceStatus.WRITTEN_OFF)  # an invoice these close has nothing more to collect


@dataclass(frozen=True)
class Event:
    """One row of the log as a writer gives it. An event about a delivery may name only
    the delivery: it is filed under the delivery's job, invoice and account."""

    kind: Kind
    status: str
    delivery_id: int | None = None
    job_id: str | None = None
    invoice_id: str | None = None
    account_id: str | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    error_code: str | None = None
    error_text: str | None = None
    detail: dict[str, Any] | None = None
    occurred_at: datetime | None = None  # when it happened, if not when it is recorded
    address: str | None = None  # the address an opt-out or an invalid-address event is about
