"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, Ed25519.

A checkpoint commits a log to its tree head (https://c2sp.org/tlog-checkpoint)::

    <origin>
    <tree size, decimal>
    <base64 root hash>

    — <key name> <base64(4-byte key ID || 64-byte Ed25519 signature)>

The signature covers the note text up to and including its last newline, not the
blank line (https://c2sp.org/signed-note). Keys are named; the key ID is
``SHA-256(name || 0x0A || 0x01 || public key)[:4]``. A verifier is configured with
one or more verifier keys (the ``<name>+<hex id>+<base64(0x01 || key)>`` text that
Go's ``golang.org/x/mod/sumdb/note`` also reads), ignores signatures from keys it does
not know, and rejects a note whose known signature fails: so old checkpoints keep
verifying across a key rotation while the old key stays in the list.

Every rejection is a :class:`CheckpointError`, whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

# signed-note "Signature types": 0x01 is Ed25519.
_ED25519 = b"\x01"
_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_KEY_ID_SIZE = 4
_SIGNATURE_SIZE = 64
_HASH_SIZE = 32
_MAX_TREE_SIZE = 2**64 - 1
# signed-note "Format": verifiers SHOULD cap signatures (and MUST take at least 16);
# 100 is Go's cap. The byte cap bounds the work any input can cause.
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1 << 20
_PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # C0 controls but newline


class CheckpointError(ValueError):
    """A checkpoint, note or key is malformed, unsigned, or signed wrongly."""


@dataclass(frozen=True)
class Checkpoint:
    """A verified tree head: ``root`` is the RFC 6962 root of the first ``size`` leaves.

    ``key_name`` names the first trusted key whose signature verified;
    ``extensions`` holds any extension lines (opaque; this service writes none).
    """

    origin: str
    size: int
    root: bytes
    key_name: str
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifierKey:
    """A trusted public key: a name, its 32-bit key ID and the Ed25519 key."""

    name: str
    key_id: int
    public_key: Ed25519PublicKey

    def encode(self) -> str:
        """The signed-note verifier key text, ``<name>+<hex id>+<base64(0x01||key)>``."""
        return encode_verifier_key(self.name, self.public_key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    """Strict RFC 4648 §4 base64: padded, no stray characters, canonical."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as error:
        raise CheckpointError(f"{what} is not base64") from error
    # Non-canonical trailing bits would let one value have several spellings.
    if _b64(data) != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return data


def _check_key_name(name: object) -> str:
    if not isinstance(name, str):
        raise CheckpointError("key name is not text")
    # signed-note "Format": non-empty, no Unicode spaces, no plus; no controls at all.
    if not name or "+" in name or any(char.isspace() or char < " " for char in name):
        raise CheckpointError(f"invalid key name {name!r}")
    return name


def _public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey) -> int:
    """signed-note "Ed25519 signatures": ``SHA-256(name || 0x0A || 0x01 || key)[:4]``."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + _ED25519 + _public_bytes(public_key)
    ).digest()
    return int.from_bytes(digest[:_KEY_ID_SIZE], "big")


def encode_verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The verifier key text for ``public_key`` under ``name``."""
    name = _check_key_name(name)
    encoded = _b64(_ED25519 + _public_bytes(public_key))
    return f"{name}+{key_id(name, public_key):08x}+{encoded}"


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse verifier key text; the embedded key ID must match the name and key."""
    if not isinstance(text, str):
        raise CheckpointError("verifier key is not text")
    # The base64 key may itself contain "+": only the first two separate fields.
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("verifier key is not <name>+<key id>+<key>")
    name, hex_id, encoded = parts
    _check_key_name(name)
    if not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
        raise CheckpointError("verifier key ID is not 8 hex digits")
    data = _unb64(encoded, "verifier key")
    if data[:1] != _ED25519 or len(data) != 1 + 32:
        raise CheckpointError("verifier key is not an Ed25519 key")
    public_key = Ed25519PublicKey.from_public_bytes(data[1:])
    if int(hex_id, 16) != key_id(name, public_key):
        raise CheckpointError("verifier key ID does not match its name and key")
    return VerifierKey(name, int(hex_id, 16), public_key)


class CheckpointSigner:
    """Signs checkpoints with one Ed25519 key under one key name.

    Keep the key in a file as PKCS#8 PEM (:meth:`to_pem`) or as Go-compatible signer
    key text (:meth:`to_signer_key`, ``PRIVATE+KEY+<name>+<hex id>+<base64>``).
    """

    def __init__(self, private_key: Ed25519PrivateKey, key_name: str) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise CheckpointError("checkpoint keys are Ed25519")
        self.private_key = private_key
        self.key_name = _check_key_name(key_name)
        self.verifier_key = VerifierKey(
            self.key_name, key_id(self.key_name, private_key.public_key()), private_key.public_key()
        )

    @classmethod
    def generate(cls, key_name: str) -> CheckpointSigner:
        """A signer with a fresh random key."""
        return cls(Ed25519PrivateKey.generate(), key_name)

    @classmethod
    def from_pem(cls, pem: bytes, key_name: str) -> CheckpointSigner:
        """Load an unencrypted PKCS#8 PEM Ed25519 private key."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            raise CheckpointError("not an unencrypted PEM private key") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise CheckpointError("checkpoint keys are Ed25519")
        return cls(key, key_name)

    def to_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM: protect the file it goes in."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_signer_key(cls, text: str) -> CheckpointSigner:
        """Load ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || 32-byte seed)>``."""
        if not isinstance(text, str) or not text.startswith(_PRIVATE_KEY_PREFIX):
            raise CheckpointError("signer key does not start with PRIVATE+KEY+")
        parts = text[len(_PRIVATE_KEY_PREFIX) :].strip().split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("signer key is not PRIVATE+KEY+<name>+<key id>+<key>")
        name, hex_id, encoded = parts
        data = _unb64(encoded, "signer key")
        if data[:1] != _ED25519 or len(data) != 1 + 32:
            raise CheckpointError("signer key is not an Ed25519 key")
        signer = cls(Ed25519PrivateKey.from_private_bytes(data[1:]), name)
        if hex_id != f"{signer.verifier_key.key_id:08x}":
            raise CheckpointError("signer key ID does not match its name and key")
        return signer

    def to_signer_key(self) -> str:
        """The private key as signer key text: protect the file it goes in."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return (
            f"{_PRIVATE_KEY_PREFIX}{self.key_name}+{self.verifier_key.key_id:08x}"
            f"+{_b64(_ED25519 + seed)}"
        )

    def sign_checkpoint(self, origin: str, size: int, root: bytes) -> str:
        """The signed note for tree head ``(size, root)`` of the log named ``origin``."""
        if not isinstance(origin, str) or not origin or any(char < " " for char in origin):
            raise CheckpointError("origin must be one non-empty line of text")
        if type(size) is not int or not 0 <= size <= _MAX_TREE_SIZE:
            raise CheckpointError("tree size must be an integer in [0, 2**64)")
        if not isinstance(root, bytes) or len(root) != _HASH_SIZE:
            raise CheckpointError("root must be a 32-byte hash")
        text = f"{origin}\n{size}\n{_b64(root)}\n"
        signature = self.private_key.sign(text.encode("utf-8"))
        signed = self.verifier_key.key_id.to_bytes(_KEY_ID_SIZE, "big") + signature
        return f"{text}\n{_SIGNATURE_PREFIX}{self.key_name} {_b64(signed)}\n"


def _split_note(note: str | bytes) -> tuple[str, list[tuple[str, int, bytes]]]:
    """signed-note "Format": the text and its ``(name, key id, signature)`` lines."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CheckpointError("note is not UTF-8") from error
    if not isinstance(note, str):
        raise CheckpointError("note is not text")
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise CheckpointError("note is not UTF-8") from error
    if size > MAX_NOTE_BYTES:
        raise CheckpointError("note is too large")
    if _CONTROL.search(note):
        raise CheckpointError("note contains control characters")
    # The text ends at the last blank line; it keeps its final newline.
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note has no signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise CheckpointError("note has no signature lines after its last blank line")
    if not block.endswith("\n"):
        raise CheckpointError("note does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError("note has too many signatures")
    signatures = []
    for line in lines:
        if not line.startswith(_SIGNATURE_PREFIX):
            raise CheckpointError("malformed signature line")
        name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        _check_key_name(name)
        data = _unb64(encoded, "signature")
        if len(data) <= _KEY_ID_SIZE:
            raise CheckpointError("signature is too short")
        key = int.from_bytes(data[:_KEY_ID_SIZE], "big")
        signatures.append((name, key, data[_KEY_ID_SIZE:]))
    return text, signatures


def _parse_body(text: str) -> tuple[str, int, bytes, tuple[str, ...]]:
    """tlog-checkpoint "Note text": origin, size, root, then extension lines."""
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        raise CheckpointError("checkpoint needs at least three non-empty lines")
    origin, size_line, root_line, *extensions = lines
    if not _DECIMAL.fullmatch(size_line):
        raise CheckpointError("tree size is not a decimal number without leading zeroes")
    size = int(size_line)
    if size > _MAX_TREE_SIZE:
        raise CheckpointError("tree size does not fit in 64 bits")
    root = _unb64(root_line, "root hash")
    if len(root) != _HASH_SIZE:
        raise CheckpointError("root hash is not 32 bytes")
    return origin, size, root, tuple(extensions)


def verify_checkpoint(
    note: str | bytes,
    verifier_keys: Iterable[VerifierKey],
    *,
    origin: str | None = None,
) -> Checkpoint:
    """Verify a signed checkpoint against trusted keys and return its tree head.

    Signatures whose (name, key ID) matches no trusted key are ignored (signed-note
    "Signatures": that is what lets witnesses cosign and keys rotate). Every signature
    from a trusted key must verify, and at least one must be present. When ``origin``
    is given the checkpoint must be for that log. Raises :class:`CheckpointError`.
    """
    text, signatures = _split_note(note)
    trusted: dict[tuple[str, int], VerifierKey] = {}
    for key in verifier_keys:
        if not isinstance(key, VerifierKey):
            raise CheckpointError("verifier keys must be VerifierKey values")
        trusted[key.name, key.key_id] = key
    signed_text = text.encode("utf-8")
    verified_by: str | None = None
    for name, key_id_value, signature in signatures:
        signer = trusted.get((name, key_id_value))
        if signer is None:
            continue
        try:
            if len(signature) != _SIGNATURE_SIZE:
                raise InvalidSignature
            signer.public_key.verify(signature, signed_text)
        except InvalidSignature as error:
            raise CheckpointError(f"signature by {name} does not verify") from error
        verified_by = verified_by or name
    if verified_by is None:
        raise CheckpointError("note has no signature by a trusted key")
    checkpoint_origin, size, root, extensions = _parse_body(text)
    if origin is not None and checkpoint_origin != origin:
        raise CheckpointError(f"checkpoint is for {checkpoint_origin!r}, not {origin!r}")
    return Checkpoint(checkpoint_origin, size, root, verified_by, extensions)
