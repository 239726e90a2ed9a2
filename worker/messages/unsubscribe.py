"""Unsubscribe links (RFC 8058): a signed token naming the account, channel and address.

The token is verified without any lookup, so the one-click endpoint needs no cookies
and a forged or altered token is refused. It is kept short, because a URI cannot be
folded across header lines: the JSON is UTF-8 (not \\u-escaped), and an account id too
long to carry is left out (the opt-out is by address; it applies to every account).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

MAX_ACCOUNT_BYTES = 64


def token(secret: str, account_id: str, channel: str, address: str) -> str:
    account = account_id if len(account_id.encode()) <= MAX_ACCOUNT_BYTES else None
    body = base64.urlsafe_b64encode(json.dumps([account, channel, address], ensure_ascii=False,
                                               separators=(",", ":")).encode()).rstrip(b"=")
    signature = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:16]
    return f"{body.decode()}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def read(secret: str, value: str) -> tuple[str | None, str, str] | None:
    """(account or None, channel, address) if the token is genuine, else None (forged, altered,
    truncated, or not even ASCII: a token we minted is base64url, so anything else is
    refused before it is compared, as bytes, in constant time)."""
    body, _, signature = value.partition(".")
    if not (body.isascii() and signature.isascii()):
        return None
    expected = base64.urlsafe_b64encode(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()[:16])
    if not hmac.compare_digest(expected.rstrip(b"="), signature.encode()):
        return None
    try:
        account, channel, address = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        return None
    return (str(account) if account is not None else None), str(channel), str(address)


def url(public_url: str, secret: str, account_id: str, channel: str, address: str) -> str:
    return f"{public_url}/u/{token(secret, account_id, channel, address)}"
