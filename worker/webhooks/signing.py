"""Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-id`,
`webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`, with a secret given as `whsec_<base64>`. Receivers verify with
any Standard Webhooks library; the tests use the reference one."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime

PREFIX = "whsec_"


def parse_secret(text: str) -> bytes:
    """`whsec_<base64>` → the key; ValueError saying what is expected."""
    if not text.startswith(PREFIX):
        raise ValueError(f"expected {PREFIX}<base64>, e.g. {PREFIX}" + base64.b64encode(b"\0" * 24).decode())
    try:
        key = base64.b64decode(text[len(PREFIX):] + "==", validate=False)
    except (binascii.Error, ValueError):
        raise ValueError(f"the part after {PREFIX} is not base64") from None
    if len(key) < 16:
        raise ValueError(f"the key is {len(key)} bytes; at least 16 random bytes are expected")
    return key


def signed_headers(key: bytes, message_id: str, now: datetime, body: bytes) -> dict[str, str]:
    """The headers that sign `body` as message `message_id`, sent at `now`."""
    timestamp = str(int(now.timestamp()))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": message_id, "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + base64.b64encode(mac).decode(), "content-type": "application/json"}
