"""Provider status callbacks as a forward-only state machine per SID.

Twilio may deliver callbacks twice or out of order (`delivered` before `sent`). A
callback is applied only when it moves the delivery forward; a repeat or a step back
is still written to the log, marked as not applied, so compliance sees everything
that arrived and the delivery's status never goes backwards.
"""

from __future__ import annotations

from collections.abc import Sequence

MESSAGE_ORDER = {"accepted": 1, "scheduled": 1, "queued": 1, "sending": 2, "sent": 3, "delivered": 4,
                 "undelivered": 4, "failed": 4, "canceled": 4, "read": 5}
CALL_ORDER = {"queued": 1, "initiated": 2, "ringing": 3, "in-progress": 4, "completed": 5, "busy": 5,
              "no-answer": 5, "failed": 5, "canceled": 5}


def verdict(channel: str, applied: Sequence[str], status: str) -> str | None:
    """None if `status` moves the delivery forward; otherwise why it is not applied."""
    order = CALL_ORDER if channel == "voice" else MESSAGE_ORDER
    if status not in order:
        return f"unknown status {status!r}"
    if status in applied:
        return "duplicate"
    current = max((order.get(s, 0) for s in applied), default=0)
    if order[status] <= current:
        return f"out of order: already {applied[-1]}"
    return None
