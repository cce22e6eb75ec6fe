"""C2SP signed-note checkpoints: signing, verification, keys, rotation, hostile input."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from consent_ledger.proofs.checkpoints import (
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    encode_verifier_key,
    key_id,
    parse_verifier_key,
    verify_checkpoint,
)
from consent_ledger.proofs.merkle import (
    ListLeafSource,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_inclusion,
)

ORIGIN = "zeroparty.example/consent-ledger"
ROOT = hashlib.sha256(b"root").digest()
EM_DASH = "\u2014"

# The example keys and note of Go's golang.org/x/mod/sumdb/note documentation.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    f"{EM_DASH} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2p"
    "ZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


@pytest.fixture(scope="module")
def signer() -> CheckpointSigner:
    return CheckpointSigner.generate(ORIGIN)


@pytest.fixture(scope="module")
def other_signer() -> CheckpointSigner:
    return CheckpointSigner.generate("other.example/log")


def signature_line(signer: CheckpointSigner, text: str) -> str:
    """A signature line by ``signer`` over arbitrary note text."""
    signature = signer.private_key.sign(text.encode("utf-8"))
    encoded = base64.b64encode(signer.verifier_key.key_id.to_bytes(4, "big") + signature)
    return f"{EM_DASH} {signer.key_name} {encoded.decode()}\n"


def sign_text(signer: CheckpointSigner, text: str) -> str:
    return f"{text}\n{signature_line(signer, text)}"


def body(origin: str = ORIGIN, size: str = "5", root: str | None = None) -> str:
    encoded = base64.b64encode(ROOT).decode() if root is None else root
    return f"{origin}\n{size}\n{encoded}\n"


# -- round trip ------------------------------------------------------------------------


def test_round_trip(signer: CheckpointSigner) -> None:
    note = signer.sign_checkpoint(ORIGIN, 5, ROOT)
    assert verify_checkpoint(note, [signer.verifier_key]) == Checkpoint(ORIGIN, 5, ROOT, ORIGIN)
    assert verify_checkpoint(note.encode(), [signer.verifier_key], origin=ORIGIN).size == 5


def test_note_layout(signer: CheckpointSigner) -> None:
    note = signer.sign_checkpoint(ORIGIN, 0, ROOT)
    text, signatures = note.split("\n\n")
    assert text == f"{ORIGIN}\n0\n{base64.b64encode(ROOT).decode()}"
    dash, name, encoded = signatures.rstrip("\n").split(" ")
    assert (dash, name) == (EM_DASH, ORIGIN)
    signed = base64.b64decode(encoded)
    assert len(signed) == 4 + 64
    assert int.from_bytes(signed[:4], "big") == signer.verifier_key.key_id
    signer.private_key.public_key().verify(signed[4:], (text + "\n").encode())


def test_largest_tree_size(signer: CheckpointSigner) -> None:
    note = signer.sign_checkpoint(ORIGIN, 2**64 - 1, ROOT)
    assert verify_checkpoint(note, [signer.verifier_key]).size == 2**64 - 1


def test_checkpoint_root_proves_inclusion(signer: CheckpointSigner) -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(21)]
    size, root = root_from_leaf_hashes(hashes)
    checkpoint = verify_checkpoint(
        signer.sign_checkpoint(ORIGIN, size, root), [signer.verifier_key]
    )
    proof = inclusion_proof(ListLeafSource(hashes), 13, checkpoint.size)
    verify_inclusion(hashes[13], 13, checkpoint.size, proof, checkpoint.root)


def test_extension_lines_are_returned(signer: CheckpointSigner) -> None:
    note = sign_text(signer, body() + "ext one\next two\n")
    checkpoint = verify_checkpoint(note, [signer.verifier_key])
    assert checkpoint.extensions == ("ext one", "ext two")


# -- keys ------------------------------------------------------------------------------


def test_key_id_follows_signed_note(signer: CheckpointSigner) -> None:
    public = signer.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    digest = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + public).digest()
    assert key_id(ORIGIN, signer.private_key.public_key()) == int.from_bytes(digest[:4], "big")


def test_verifier_key_round_trip(signer: CheckpointSigner) -> None:
    text = encode_verifier_key(ORIGIN, signer.private_key.public_key())
    assert text == signer.verifier_key.encode()
    name, hex_id, _ = text.split("+", 2)
    assert (name, int(hex_id, 16)) == (ORIGIN, signer.verifier_key.key_id)
    assert parse_verifier_key(text + "\n") == signer.verifier_key


def test_go_sumdb_note_keys_interoperate() -> None:
    go_signer = CheckpointSigner.from_signer_key(GO_SIGNER_KEY)
    assert go_signer.verifier_key.encode() == GO_VERIFIER_KEY
    assert go_signer.to_signer_key() == GO_SIGNER_KEY
    assert parse_verifier_key(GO_VERIFIER_KEY) == go_signer.verifier_key
    text = GO_NOTE.split("\n\n")[0] + "\n"
    # Ed25519 is deterministic: the same key signs Go's example note identically.
    assert signature_line(go_signer, text) == GO_NOTE.split("\n\n")[1]


def test_signed_note_that_is_not_a_checkpoint_is_rejected() -> None:
    with pytest.raises(CheckpointError, match="three non-empty lines"):
        verify_checkpoint(GO_NOTE, [parse_verifier_key(GO_VERIFIER_KEY)])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not <name>"),
        ("name+c74f20a3", "not <name>"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "invalid key name"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex"),
        ("PeterNeumann+c74f20ag+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("Peter+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "base64"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX", "does not match"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10R=", "canonical"),
        ("PeterNeumann+c74f20a3+Alpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not an Ed25519"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10Q=", "not an Ed25519"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\u00e9", "base64"),
    ],
)
def test_parse_verifier_key_rejects(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_verifier_key(text)


def test_parse_verifier_key_rejects_non_text() -> None:
    with pytest.raises(CheckpointError, match="not text"):
        parse_verifier_key(b"x")  # type: ignore[arg-type]


def test_pem_round_trip(signer: CheckpointSigner) -> None:
    pem = signer.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = CheckpointSigner.from_pem(pem, ORIGIN)
    assert loaded.verifier_key == signer.verifier_key
    note = loaded.sign_checkpoint(ORIGIN, 3, ROOT)
    assert verify_checkpoint(note, [signer.verifier_key]).size == 3


def test_signer_key_round_trip(signer: CheckpointSigner) -> None:
    text = signer.to_signer_key()
    assert text.startswith(f"PRIVATE+KEY+{ORIGIN}+")
    assert CheckpointSigner.from_signer_key(text).verifier_key == signer.verifier_key


def test_from_pem_rejects_other_keys() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CheckpointError, match="Ed25519"):
        CheckpointSigner.from_pem(ec_pem, ORIGIN)
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(CheckpointError, match="unencrypted PEM"):
        CheckpointSigner.from_pem(encrypted, ORIGIN)
    with pytest.raises(CheckpointError, match="unencrypted PEM"):
        CheckpointSigner.from_pem(b"not a key", ORIGIN)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "PRIVATE"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3", "PRIVATE\\+KEY\\+<name>"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "ID"),
        ("PRIVATE+KEY+Peter Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "name"),
        (
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            "Ed25519",
        ),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEK", "Ed25519"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEK*", "base64"),
    ],
)
def test_from_signer_key_rejects(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        CheckpointSigner.from_signer_key(text)


@pytest.mark.parametrize("name", ["", "with space", "with+plus", "tab\tname", "nbsp\u00a0name"])
def test_signer_rejects_invalid_key_names(name: str) -> None:
    with pytest.raises(CheckpointError, match="key name"):
        CheckpointSigner.generate(name)


def test_signer_rejects_non_text_key_name() -> None:
    with pytest.raises(CheckpointError, match="key name is not text"):
        CheckpointSigner.generate(b"name")  # type: ignore[arg-type]


def test_signer_rejects_non_ed25519_keys() -> None:
    with pytest.raises(CheckpointError, match="Ed25519"):
        CheckpointSigner(ec.generate_private_key(ec.SECP256R1()), ORIGIN)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("origin", "size", "root", "message"),
    [
        ("", 1, ROOT, "origin"),
        ("two\nlines", 1, ROOT, "origin"),
        (b"bytes", 1, ROOT, "origin"),
        (ORIGIN, -1, ROOT, "tree size"),
        (ORIGIN, 2**64, ROOT, "tree size"),
        (ORIGIN, True, ROOT, "tree size"),
        (ORIGIN, 1.0, ROOT, "tree size"),
        (ORIGIN, 1, ROOT[:31], "root"),
        (ORIGIN, 1, ROOT.hex(), "root"),
    ],
)
def test_sign_checkpoint_rejects_bad_arguments(
    signer: CheckpointSigner, origin: Any, size: Any, root: Any, message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        signer.sign_checkpoint(origin, size, root)


# -- forgeries and wrong keys ----------------------------------------------------------


def test_forged_signature_is_rejected(signer: CheckpointSigner) -> None:
    note = signer.sign_checkpoint(ORIGIN, 5, ROOT)
    text, line = note.split("\n\n")
    prefix, encoded = line.rstrip("\n").rsplit(" ", 1)
    signed = bytearray(base64.b64decode(encoded))
    signed[-1] ^= 1
    forged = f"{text}\n\n{prefix} {base64.b64encode(bytes(signed)).decode()}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(forged, [signer.verifier_key])


def test_truncated_signature_is_rejected(signer: CheckpointSigner) -> None:
    note = signer.sign_checkpoint(ORIGIN, 5, ROOT)
    text = note.split("\n\n")[0]
    key = signer.verifier_key.key_id.to_bytes(4, "big")
    short = base64.b64encode(key + b"\x00" * 10).decode()
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(f"{text}\n\n{EM_DASH} {ORIGIN} {short}\n", [signer.verifier_key])


def test_other_key_is_not_trusted(signer: CheckpointSigner, other_signer: CheckpointSigner) -> None:
    note = other_signer.sign_checkpoint(ORIGIN, 5, ROOT)
    with pytest.raises(CheckpointError, match="no signature by a trusted key"):
        verify_checkpoint(note, [signer.verifier_key])


def test_same_name_other_key_is_ignored(signer: CheckpointSigner) -> None:
    impostor = CheckpointSigner.generate(ORIGIN)
    note = impostor.sign_checkpoint(ORIGIN, 5, ROOT)
    with pytest.raises(CheckpointError, match="no signature by a trusted key"):
        verify_checkpoint(note, [signer.verifier_key])


def test_colliding_key_id_must_verify(signer: CheckpointSigner) -> None:
    # A signature claiming the trusted (name, key ID) but made by another key.
    impostor = CheckpointSigner.generate(ORIGIN)
    text = body()
    signature = impostor.private_key.sign(text.encode())
    claimed = signer.verifier_key.key_id.to_bytes(4, "big") + signature
    note = f"{text}\n{EM_DASH} {ORIGIN} {base64.b64encode(claimed).decode()}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(note, [signer.verifier_key])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n5\n", "\n6\n"),
        ("\n5\n", "\n05\n"),
        (ORIGIN, "zeroparty.example/other"),
        (base64.b64encode(ROOT).decode(), base64.b64encode(bytes(32)).decode()),
    ],
    ids=["size", "size-spelling", "origin", "root"],
)
def test_modified_body_is_rejected(signer: CheckpointSigner, old: str, new: str) -> None:
    note = signer.sign_checkpoint(ORIGIN, 5, ROOT)
    text, signatures = note.split("\n\n")
    tampered = text.replace(old, new, 1) + "\n\n" + signatures
    assert tampered != note
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(tampered, [signer.verifier_key])


def test_wrong_origin_is_rejected(other_signer: CheckpointSigner) -> None:
    note = other_signer.sign_checkpoint("other.example/log", 5, ROOT)
    with pytest.raises(CheckpointError, match="not 'zeroparty"):
        verify_checkpoint(note, [other_signer.verifier_key], origin=ORIGIN)


def test_verifier_keys_must_be_parsed(signer: CheckpointSigner) -> None:
    note = signer.sign_checkpoint(ORIGIN, 5, ROOT)
    with pytest.raises(CheckpointError, match="VerifierKey"):
        verify_checkpoint(note, [signer.verifier_key.encode()])  # type: ignore[list-item]


# -- rotation and cosigning ------------------------------------------------------------


def test_rotation_keeps_old_checkpoints_verifiable() -> None:
    old, new = CheckpointSigner.generate(ORIGIN), CheckpointSigner.generate(ORIGIN)
    assert old.verifier_key.key_id != new.verifier_key.key_id
    trusted = [parse_verifier_key(old.verifier_key.encode()), new.verifier_key]
    old_note = old.sign_checkpoint(ORIGIN, 5, ROOT)
    new_note = new.sign_checkpoint(ORIGIN, 6, ROOT)
    assert verify_checkpoint(old_note, trusted).size == 5
    assert verify_checkpoint(new_note, trusted).size == 6
    # Once the old key is retired its checkpoints stop verifying.
    with pytest.raises(CheckpointError, match="no signature by a trusted key"):
        verify_checkpoint(old_note, [new.verifier_key])


def test_cosigned_note_verifies_with_either_key(
    signer: CheckpointSigner, other_signer: CheckpointSigner
) -> None:
    text = body()
    note = text + "\n" + signature_line(other_signer, text) + signature_line(signer, text)
    assert verify_checkpoint(note, [signer.verifier_key]).key_name == ORIGIN
    assert verify_checkpoint(note, [other_signer.verifier_key]).key_name == other_signer.key_name
    both = verify_checkpoint(note, [signer.verifier_key, other_signer.verifier_key])
    assert both.key_name == other_signer.key_name  # the first trusted signature


def test_one_bad_trusted_signature_rejects_the_note(
    signer: CheckpointSigner, other_signer: CheckpointSigner
) -> None:
    text = body()
    bad = signature_line(other_signer, text + "x")
    note = text + "\n" + signature_line(signer, text) + bad
    assert verify_checkpoint(note, [signer.verifier_key]).size == 5
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(note, [signer.verifier_key, other_signer.verifier_key])


# -- malformed notes -------------------------------------------------------------------

SIGNED_BODY_CASES = [
    ("origin\n5\n", "three non-empty lines"),
    ("origin\n\n5\n" + base64.b64encode(ROOT).decode() + "\n", "three non-empty lines"),
    (body(size="05"), "leading zeroes"),
    (body(size="-1"), "decimal"),
    (body(size="+5"), "decimal"),
    (body(size=" 5"), "decimal"),
    (body(size="\u0665"), "decimal"),  # ARABIC-INDIC DIGIT FIVE
    (body(size=str(2**64)), "64 bits"),
    (body(root=base64.b64encode(ROOT[:31]).decode()), "32 bytes"),
    (body(root=base64.b64encode(ROOT).decode().rstrip("=")), "base64"),
    (body(root=ROOT.hex()), "base64|32 bytes"),
    (body(root=base64.b64encode(ROOT).decode()[:-2] + "J="), "canonical"),
    (body() + "ext\n\u00a0\n", None),
]


@pytest.mark.parametrize(("text", "message"), SIGNED_BODY_CASES)
def test_malformed_signed_body_is_rejected(
    signer: CheckpointSigner, text: str, message: str | None
) -> None:
    note = sign_text(signer, text)
    if message is None:  # a non-breaking space is a non-empty extension line
        assert verify_checkpoint(note, [signer.verifier_key]).extensions == ("ext", "\u00a0")
        return
    with pytest.raises(CheckpointError, match=message):
        verify_checkpoint(note, [signer.verifier_key])


MANGLED_NOTES: dict[str, tuple[Callable[[str], str], str]] = {
    "empty": (lambda note: "", "no signatures"),
    "no-blank-line": (lambda note: note.replace("\n\n", "\n"), "no signatures"),
    "no-final-newline": (lambda note: note.rstrip("\n"), "newline"),
    "trailing-blank-line": (lambda note: note + "\n", "no signature lines after"),
    "trailing-text": (lambda note: note + "trailing\n", "malformed signature line"),
    "ascii-dashes": (lambda note: note.replace(EM_DASH, "--"), "malformed signature line"),
    "no-space-after-dash": (
        lambda note: note.replace(EM_DASH + " ", EM_DASH),
        "malformed signature line",
    ),
    "double-space": (lambda note: note.replace(f" {ORIGIN} ", f" {ORIGIN}  "), "base64"),
    "no-key-name": (lambda note: note.replace(f" {ORIGIN} ", " "), "key name|too short"),
    "plus-in-name": (lambda note: note.replace(f" {ORIGIN} ", f" {ORIGIN}+x "), "key name"),
    "no-padding": (lambda note: note.replace("=\n", "\n"), "base64"),
    "carriage-return": (lambda note: note.replace("\n5\n", "\n5\r\n"), "control characters"),
    "nul": (lambda note: note.replace("\n5\n", "\n5\x00\n"), "control characters"),
    "lone-surrogate": (lambda note: note.replace("\n5\n", "\n5\ud800\n"), "UTF-8"),
    "too-many-signatures": (
        lambda note: note + note.split("\n\n")[1] * MAX_SIGNATURES,
        "too many signatures",
    ),
    "too-large": (
        lambda note: note.replace("\n5\n", "\n" + "5" * (1 << 20) + "\n"),
        "too large",
    ),
    "short-signature": (
        lambda note: note.split("\n\n")[0] + f"\n\n{EM_DASH} {ORIGIN} AAAA\n",
        "too short",
    ),
}


@pytest.mark.parametrize(("mangle", "message"), MANGLED_NOTES.values(), ids=MANGLED_NOTES.keys())
def test_malformed_note_is_rejected(signer: CheckpointSigner, mangle: Any, message: str) -> None:
    note = signer.sign_checkpoint(ORIGIN, 5, ROOT)
    with pytest.raises(CheckpointError, match=message):
        verify_checkpoint(mangle(note), [signer.verifier_key])


@pytest.mark.parametrize("note", [b"\xff\xfe", None, 5, ["note"]])
def test_non_text_note_is_rejected(signer: CheckpointSigner, note: Any) -> None:
    with pytest.raises(CheckpointError, match=r"UTF-8|not text"):
        verify_checkpoint(note, [signer.verifier_key])


def test_sixteen_signatures_are_accepted(signer: CheckpointSigner) -> None:
    # signed-note "Format": verifiers MUST accept at least 16 signatures.
    text = body()
    witnesses = "".join(
        signature_line(CheckpointSigner.generate(f"witness{i}.example"), text) for i in range(15)
    )
    note = text + "\n" + witnesses + signature_line(signer, text)
    assert verify_checkpoint(note, [signer.verifier_key]).key_name == ORIGIN


# -- fuzzing ---------------------------------------------------------------------------


FUZZ_SIGNER = CheckpointSigner.from_signer_key(GO_SIGNER_KEY)
FUZZ_NOTE = FUZZ_SIGNER.sign_checkpoint("PeterNeumann", 5, ROOT)


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_fuzzed_text_raises_only_checkpoint_error(text: str) -> None:
    with pytest.raises(CheckpointError):
        verify_checkpoint(text, [FUZZ_SIGNER.verifier_key])


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzzed_bytes_raise_only_checkpoint_error(data: bytes) -> None:
    with pytest.raises(CheckpointError):
        verify_checkpoint(data, [FUZZ_SIGNER.verifier_key])


@settings(max_examples=500)
@given(
    st.integers(min_value=0, max_value=len(FUZZ_NOTE)),
    st.integers(min_value=0, max_value=4),
    st.text(max_size=4),
)
def test_mutated_notes_raise_only_checkpoint_error(start: int, deleted: int, inserted: str) -> None:
    mutated = FUZZ_NOTE[:start] + inserted + FUZZ_NOTE[start + deleted :]
    try:
        checkpoint = verify_checkpoint(mutated, [FUZZ_SIGNER.verifier_key])
    except CheckpointError:
        return
    # Only a mutation that changed nothing may still verify.
    assert mutated == FUZZ_NOTE
    assert checkpoint.size == 5


@settings(max_examples=200)
@given(st.text(max_size=120))
def test_fuzzed_verifier_keys_raise_only_checkpoint_error(text: str) -> None:
    for candidate in (text, GO_VERIFIER_KEY[:20] + text, text + GO_VERIFIER_KEY[-20:]):
        try:
            parse_verifier_key(candidate)
        except CheckpointError:
            continue
