"""Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-id`,
`webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`, with a secret given as `whsec_<base64>`. Receivers verify with
any Standard Webhooks library; the tests use the reference one."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime


def signed_headers(key: bytes, message_id: str, now: datetime, body: bytes) -> dict[str, str]:
    """The headers that sign `body` as message `message_id`, sent at `now`."""
    timestamp = str(int(now.timestamp()))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": message_id, "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + base64.b64encode(mac).decode(), "content-type": "application/json"}
