"""What a webhook says: `{"type", "timestamp", "data"}` (the Standard Webhooks shape),
built from the event it reports and the delivery that event is about. The models are
the contract: they build every body and describe it in `/v1/openapi.json` (`webhooks`).

The data tells the billing system what happened to its job — ids, channel, status,
times, the reasons and rule IDs — and never what was said: no message content, and
the recipient masked (`j***@example.com`, `+86138****8000`). The body is built the
same way from the same rows on every retry, so a receiver that stored the first copy
can compare."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, cast

from pydantic import BaseModel, Field

from worker.masking import mask
from worker.webhooks.outbox import Pending

Type = Literal["reminder.sent", "reminder.delivered", "reminder.failed", "reminder.suppressed", "invoice.escalated"]
SUMMARIES: dict[str, str] = {
    "reminder.sent": "A reminder was handed to the provider (SMTP accepted it, Twilio queued it)",
    "reminder.delivered": "The provider says it arrived: an SMS delivered, a call answered",
    "reminder.failed": "A reminder could not be sent, or the provider says it did not arrive",
    "reminder.suppressed": "A reminder was decided against (paid, disputed, opted out, a cap...): see `rules`",
    "invoice.escalated": "The invoice was handed to a person",
}


class WebhookData(BaseModel):
    job_id: str | None
    invoice_id: str | None
    account_id: str | None
    status: str = Field(description="The event's status: sent, delivered, failed, a provider's status, skip, "
                                    "escalated")
    occurred_at: datetime
    channel: str | None = Field(None, description="email, sms or voice, when the event is about one")
    stage: str | None = None
    recipient: str | None = Field(None, description="The address, masked (z***@example.com, +86138****8000)")
    provider: str | None = None
    provider_message_id: str | None = None
    reasons: list[str] = Field(default_factory=list, description="Why, in words")
    rules: list[str] = Field(default_factory=list, description="The rule IDs that applied (COMPLIANCE.md)")
    error_code: str | None = Field(None, description="reminder.failed: the provider's or our error code")


class WebhookMessage(BaseModel):
    type: Type
    timestamp: datetime = Field(description="When the event happened (the webhook-timestamp header is when it "
                                            "was sent)")
    data: WebhookData


def message(hook: Pending) -> WebhookMessage:
    detail = hook.detail or {}
    delivery = hook.channel is not None  # else a decision, an escalation, a failure before any claim
    return WebhookMessage(type=cast(Type, hook.type), timestamp=hook.occurred_at, data=WebhookData(
        job_id=hook.job_id, invoice_id=hook.invoice_id, account_id=hook.account_id, status=hook.status,
        occurred_at=hook.occurred_at, error_code=hook.error_code if hook.type == "reminder.failed" else None,
        channel=hook.channel if delivery else detail.get("channel"),
        stage=hook.stage if delivery else detail.get("stage"),
        recipient=mask("address", hook.recipient or "") if delivery else None,
        provider=hook.provider if delivery else None,
        provider_message_id=hook.provider_message_id if delivery else None,
        reasons=(hook.reasons or []) if delivery else list(detail.get("reasons", [])),
        rules=(hook.rules or []) if delivery else list(detail.get("rules", []))))


def body(hook: Pending) -> bytes:
    """The bytes that are signed and sent: compact JSON, UTF-8."""
    return message(hook).model_dump_json().encode()
