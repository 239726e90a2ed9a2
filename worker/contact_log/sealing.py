"""Personal data sealed at rest, one key per account (issue 14, first piece: the keys).

A master key (`DUNNING_MASTER_KEY`: 32 random bytes, base64) wraps a data key per
account; the data key seals that account's personal values with AES-256-GCM. Each
sealed value is bound to its account and to what it is (the associated data), so a
ciphertext moved to another account or field does not open. Destroying an account's
wrapped key makes everything sealed under it unreadable for good — erasure without
touching the hash chain, which covers the ciphertexts. Rotating the master key
re-wraps the account keys only; no sealed value changes.

Wire format of a sealed value: `v1.` + base64url(nonce ‖ ciphertext ‖ tag). Of a
wrapped key: the same, sealed under the master key with the account id as associated
data. This module holds the cryptography; where keys and values are stored, and who
may read them, is the log's (the next pieces of issue 14).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1."
_NONCE = 12


class SealError(ValueError):
    """A sealed value or a key that does not open: altered, moved, or under another key."""


def parse_master_key(text: str) -> bytes:
    """`DUNNING_MASTER_KEY` → 32 bytes; ValueError saying what is expected."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64; expected 32 random bytes in base64, e.g. "
                         "`python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'`") from None
    if len(key) != 32:
        raise ValueError(f"{len(key)} bytes; 32 random bytes in base64 expected")
    return key


def _seal(key: bytes, plain: bytes, about: bytes) -> str:
    nonce = os.urandom(_NONCE)
    return VERSION + base64.urlsafe_b64encode(nonce + AESGCM(key).encrypt(nonce, plain, about)).decode()


def _open(key: bytes, sealed: str, about: bytes) -> bytes:
    if not sealed.startswith(VERSION):
        raise SealError("not a sealed value")
    try:
        raw = base64.urlsafe_b64decode(sealed[len(VERSION):])
        return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], about)
    except (InvalidTag, binascii.Error, ValueError):
        raise SealError("does not open: altered, moved to another account or field, or under another key") from None


def new_account_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap(master: bytes, account_id: str, account_key: bytes) -> str:
    """An account's data key, sealed under the master key, bound to the account."""
    return _seal(master, account_key, b"account-key:" + account_id.encode())


def unwrap(master: bytes, account_id: str, wrapped: str) -> bytes:
    return _open(master, wrapped, b"account-key:" + account_id.encode())


def rewrap(old_master: bytes, new_master: bytes, account_id: str, wrapped: str) -> str:
    """The same account key under a new master key (rotation: no sealed value changes)."""
    return wrap(new_master, account_id, unwrap(old_master, account_id, wrapped))


def seal(account_key: bytes, account_id: str, field: str, value: str) -> str:
    """`value` sealed for `account_id`'s `field` (e.g. `recipient`, `payload`)."""
    return _seal(account_key, value.encode("utf-8", "surrogatepass"), f"{account_id}\x00{field}".encode())


def open_sealed(account_key: bytes, account_id: str, field: str, sealed: str) -> str:
    return _open(account_key, sealed, f"{account_id}\x00{field}".encode()).decode("utf-8", "surrogatepass")
