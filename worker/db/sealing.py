"""Personal data sealed at rest: the cryptography (AES-256-GCM), nothing about storage.

A master key (`DUNNING_MASTER_KEY`: 32 random bytes, base64) wraps data keys; a data key
seals one owner's personal values — an account's, or an address's when an event names
an address and no account (an opt-out texted from a number). Each sealed value names
its key (`sealed:v1:KEY_ID:` + base64url(nonce ‖ ciphertext ‖ tag)) and is bound to that
key and to the field it is (the associated data), so it opens only as what it was
written as. Destroying a data key makes everything sealed under it unreadable for good
— erasure without touching the hash chain, which covers the ciphertexts. Rotating the
master key re-wraps the data keys only; no sealed value changes.

Where keys live and who may open values is `vault.py`'s.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed:v1:"
_NONCE = 12


class SealError(ValueError):
    """A sealed value or a key that does not open: altered, moved, or under another key."""


Key = bytes | AESGCM  # a key, or a cipher made from it once and kept (the vault's, for speed)


def _cipher(key: Key) -> AESGCM:
    return key if isinstance(key, AESGCM) else AESGCM(key)


def _seal(key: Key, plain: bytes, about: bytes) -> str:
    nonce = os.urandom(_NONCE)
    return base64.urlsafe_b64encode(nonce + _cipher(key).encrypt(nonce, plain, about)).decode()


def _open(key: Key, sealed: str, about: bytes) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(sealed)
        return _cipher(key).decrypt(raw[:_NONCE], raw[_NONCE:], about)
    except (InvalidTag, binascii.Error, ValueError):
        raise SealError("does not open: altered, moved to another field, or under another key") from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def new_key_id() -> str:
    return os.urandom(8).hex()


def wrap(master: bytes, key_id: str, data_key: bytes) -> str:
    """A data key, sealed under the master key, bound to its id."""
    return _seal(master, data_key, b"data-key:" + key_id.encode())


def unwrap(master: bytes, key_id: str, wrapped: str) -> bytes:
    return _open(master, wrapped, b"data-key:" + key_id.encode())


def rewrap(old_master: bytes, new_master: bytes, key_id: str, wrapped: str) -> str:
    """The same data key under a new master key (rotation: no sealed value changes)."""
    return wrap(new_master, key_id, unwrap(old_master, key_id, wrapped))


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def key_id_of(sealed: str) -> str:
    """The id of the key a sealed value was sealed under."""
    if not is_sealed(sealed):
        raise SealError("not a sealed value")
    return sealed[len(PREFIX):].partition(":")[0]


def seal(data_key: Key, key_id: str, field: str, value: str) -> str:
    """`value` sealed as `field` (e.g. `recipient`, `payload`) under the data key `key_id`."""
    about = f"{key_id}\x00{field}".encode()
    return f"{PREFIX}{key_id}:" + _seal(data_key, value.encode("utf-8", "surrogatepass"), about)


def open_sealed(data_key: Key, field: str, sealed: str) -> str:
    key_id = key_id_of(sealed)
    body = sealed[len(PREFIX) + len(key_id) + 1:]
    return _open(data_key, body, f"{key_id}\x00{field}".encode()).decode("utf-8", "surrogatepass")
