"""Checkpoints as signed notes: every chain's size and head, in a text anyone can check
with a public key, kept outside the database.

The format is C2SP's: a checkpoint's text has the shape of a transparency log's
(https://c2sp.org/tlog-checkpoint) — the log's origin, a size, a base64 root hash —
and it is signed as a signed note (https://c2sp.org/signed-note) with Ed25519. Here
the size is the number of events in all chains, the root is the RFC 6962 Merkle tree
hash over one leaf per chain (`"<chain> <size> <head>"`, chain 0 first: the single
chain of before), and the extension lines after it are the time and those leaves, so
a verifier needs nothing else. Keys are written as Go's `golang.org/x/mod/sumdb/note`
writes them: `name+hash+base64(0x01 || public key)`, and the signer's
`PRIVATE+KEY+name+hash+base64(0x01 || seed)`.

This module is pure (no database): `checkpoints.py` reads the heads and keeps notes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_ED25519 = b"\x01"
_DASH = "\u2014 "  # a signature line starts with an em dash and a space


class NoteError(ValueError):
    """A checkpoint or key that is not what it should be: the message says which part."""


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint says: the log, when, and each chain's size and head digest."""

    origin: str
    at: datetime
    heads: Mapping[int, tuple[int, str]]  # chain: (size, head), chain 0 included

    @property
    def size(self) -> int:
        return sum(size for size, _ in self.heads.values())

    def leaves(self) -> list[str]:
        return [f"{chain} {size} {head}" for chain, (size, head) in sorted(self.heads.items())]

    @property
    def root(self) -> bytes:
        return merkle_root([leaf.encode() for leaf in self.leaves()])

    def text(self) -> str:
        """The note's text, as signed: every line ends with a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(),
                 f"time {self.at.astimezone(UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')}",
                 *self.leaves()]
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def in_note(cls, note: str) -> Checkpoint:
        """The checkpoint a signed note carries, its signatures left unchecked (the log's
        own copy; an auditor's goes through `Verifier.open`)."""
        return cls.parse(note.rpartition("\n\n")[0] + "\n")

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint from its note's text (signatures are `Verifier.open`'s business)."""
        lines = text.split("\n")
        if len(lines) < 5 or lines[-1] != "":
            raise NoteError("a checkpoint: origin, size, root hash, time and one line per chain expected")
        origin, size, root, when, *leaves = lines[:-1]
        if not when.startswith("time "):
            raise NoteError(f"line 4: {when!r}; 'time <RFC 3339>' expected")
        heads: dict[int, tuple[int, str]] = {}
        for number, leaf in enumerate(leaves, start=5):
            parts = leaf.split(" ")
            if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[2]) != 64:
                raise NoteError(f"line {number}: {leaf!r}; '<chain> <size> <head digest>' expected")
            heads[int(parts[0])] = (int(parts[1]), parts[2])
        try:
            at = datetime.fromisoformat(when[5:].replace("Z", "+00:00"))
        except ValueError:
            raise NoteError(f"line 4: {when!r}; an RFC 3339 time expected") from None
        found = cls(origin, at, heads)
        if str(found.size) != size or base64.b64encode(found.root).decode() != root:
            raise NoteError("the size or the root hash does not match the chains' lines")
        return found


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962's Merkle tree hash (section 2.1): leaves hashed with 0x00, nodes with 0x01."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below the count
    return hashlib.sha256(b"\x01" + merkle_root(leaves[:split]) + merkle_root(leaves[split:])).digest()


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r}: no spaces and no '+' expected (the log's origin, such as "
                        "billing.example.com/dunning)")
    return name


@dataclass(frozen=True)
class Signer:
    """The checkpoint key (`DUNNING_CHECKPOINT_KEY`): signs notes."""

    name: str
    private: Ed25519PrivateKey

    @classmethod
    def parse(cls, text: str) -> Signer:
        parts = text.strip().split("+", 4)  # the key's base64 may hold a '+' too
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signer key: PRIVATE+KEY+<name>+<hash>+<key> expected (`dunning log keygen` makes one)")
        name, raw = _check_name(parts[2]), _b64(parts[4], "the signer key")
        if len(raw) != 33 or raw[:1] != _ED25519:
            raise NoteError("the signer key: an Ed25519 key (33 bytes, starting 0x01) expected")
        found = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if _key_hash(name, found.public()).hex() != parts[3]:
            raise NoteError("the signer key: its hash does not match its name and key")
        return found

    def public(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def verifier(self) -> str:
        """The public half, as verifiers are given it."""
        public = self.public()
        return f"{self.name}+{_key_hash(self.name, public).hex()}+{base64.b64encode(_ED25519 + public).decode()}"

    def sign(self, text: str) -> str:
        """`text` as a signed note: a blank line, then this key's signature line."""
        signature = self.private.sign(text.encode())
        line = base64.b64encode(_key_hash(self.name, self.public()) + signature).decode()
        return f"{text}\n{_DASH}{self.name} {line}\n"


@dataclass(frozen=True)
class Verifier:
    """A checkpoint key's public half: opens notes it signed."""

    name: str
    key_hash: bytes
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)  # the key's base64 may hold a '+' too
        if len(parts) != 3:
            raise NoteError("a verifier key: <name>+<hash>+<key> expected (`dunning log keygen` prints one)")
        name, raw = _check_name(parts[0]), _b64(parts[2], "the verifier key")
        if len(raw) != 33 or raw[:1] != _ED25519:
            raise NoteError("the verifier key: an Ed25519 key (33 bytes, starting 0x01) expected")
        if _key_hash(name, raw[1:]).hex() != parts[1]:
            raise NoteError("the verifier key: its hash does not match its name and key")
        return cls(name, bytes.fromhex(parts[1]), Ed25519PublicKey.from_public_bytes(raw[1:]))

    def open(self, note: str) -> str:
        """The note's text, if this key signed it; `NoteError` otherwise."""
        text, separator, signatures = note.rpartition("\n\n")
        if not separator:
            raise NoteError("a signed note: its text, a blank line, then signature lines expected")
        text += "\n"
        for line in signatures.split("\n"):
            if not line.startswith(_DASH):
                continue
            name, _, encoded = line[len(_DASH):].partition(" ")
            raw = _b64(encoded, "a signature line")
            if name != self.name or raw[:4] != self.key_hash:
                continue
            try:
                self.public.verify(raw[4:], text.encode())
            except InvalidSignature:
                raise NoteError(f"the signature by {name} does not match the text: the checkpoint was altered"
                                ) from None
            return text
        raise NoteError(f"no signature by {self.name} on this checkpoint")


def keygen(name: str) -> tuple[str, str]:
    """A new key pair: (the signer key for `DUNNING_CHECKPOINT_KEY`, the verifier key)."""
    signer = Signer(_check_name(name), Ed25519PrivateKey.generate())
    seed = signer.private.private_bytes_raw()
    key_hash = _key_hash(name, signer.public()).hex()
    return f"PRIVATE+KEY+{name}+{key_hash}+{base64.b64encode(_ED25519 + seed).decode()}", signer.verifier()


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise NoteError(f"{what}: base64 expected") from None
