"""Consent receipts: made by ``zeroparty receipt EMAIL``, checked offline by
``zeroparty receipt verify FILE --key VKEY`` with nothing but the published key.

The receipt names the lead by its pseudonymous id and carries, per purpose, the ledger
entry, its inclusion proof and the signed checkpoint the proof leads to; the whole of it
is signed. Every changed byte must fail, every layer must hold on its own (re-signed
forgeries), and no input may crash the verifier.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod
from consent_ledger.entries import ENTRY_FIELDS, canonical_bytes, entry_hash
from consent_ledger.proofs import merkle, receipts, transparency
from consent_ledger.proofs.checkpoints import CheckpointSigner, parse_verifier_key
from consent_ledger.subjects import find_subject_id
from tests.consent_ledger.test_tree import grow
from tests.factories import record
from zeroparty import cli
from zeroparty.db import Database
from zeroparty.settings import Settings

ANN = "ann@example.com"
KANTARA_FIELDS = {
    "version",
    "jurisdiction",
    "consentTimestamp",
    "collectionMethod",
    "consentReceiptID",
    "language",
    "piiPrincipalId",
    "piiControllers",
    "policyUrl",
    "services",
}
KANTARA_PURPOSE_FIELDS = {"purposeCategory", "consentType", "termination", "thirdPartyDisclosure"}

Receipt = dict[str, Any]


@pytest.fixture
def ledger_cli(cli_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The in-process CLI on the test database, with the test's key file and origin
    (``cli_env`` leaves both at their defaults: a key file in the working directory)."""
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_KEY_FILE", str(cli_env.checkpoint_key_file))
    monkeypatch.setenv("ZEROPARTY_BASE_URL", cli_env.base_url)
    return cli_env


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def vkey(app_client: TestClient) -> str:
    """The log's public key, as anyone gets it: the first line of ``GET /ledger/key``."""
    response = app_client.get("/ledger/key")
    assert response.status_code == 200
    return response.text.splitlines()[0]


@pytest.fixture
def signer(settings: Settings, vkey: str) -> CheckpointSigner:
    loaded = transparency.load_signer(settings, create=False)
    assert loaded.verifier_key.encode() == vkey
    return loaded


@pytest.fixture
def ann_receipt(
    database: Database,
    vkey: str,
    ledger_cli: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    """Ann's receipt (two purposes) from the CLI, in a ledger of some 300 entries, so
    the proofs run through a stored tile and have several nodes."""
    record(database, ANN, "profiling", jurisdiction="DE")
    grow(database, 260)
    record(database, ANN, "newsletter")
    record(database, ANN, "newsletter", ConsentAction.CONFIRMED, method=ConsentMethod.EMAIL_LINK)
    record(database, "bob@example.com", "sale_sharing", ConsentAction.REFUSED)
    code, out, err = run_cli(capsys, "receipt", ANN)
    assert code == 0, err
    path = tmp_path / "receipt.json"
    path.write_text(out)
    return path


def load(path: Path) -> Receipt:
    value = orjson.loads(path.read_bytes())
    assert isinstance(value, dict)
    return value


def verify_file(capsys: pytest.CaptureFixture[str], path: Path, *keys: str) -> tuple[int, str, str]:
    argv = [arg for key in keys for arg in ("--key", key)]
    code, out, err = run_cli(capsys, "receipt", "verify", str(path), *argv)
    assert "Traceback" not in out + err
    return code, out, err


# --- a receipt verifies offline --------------------------------------------------------------


def test_receipt_verifies_offline_with_the_published_key(
    ann_receipt: Path, vkey: str, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = verify_file(capsys, ann_receipt, vkey)
    assert code == 0, out
    with database.read() as session:
        subject_id = find_subject_id(session, ANN)
    assert out.startswith(f"receipt valid: subject {subject_id}, purposes profiling, newsletter")
    check = receipts.verify_receipt(load(ann_receipt), [parse_verifier_key(vkey)])
    assert check == receipts.ReceiptCheck(
        str(subject_id), ("profiling", "newsletter"), 264, "testserver/consent-ledger"
    )


def test_receipt_holds_the_kantara_fields(ann_receipt: Path, database: Database) -> None:
    receipt = load(ann_receipt)
    assert set(receipt) >= KANTARA_FIELDS
    assert receipt["version"] == "KI-CR-v1.1.0"
    assert isinstance(receipt["consentTimestamp"], int)
    assert uuid.UUID(receipt["consentReceiptID"]).version is not None
    assert receipt["language"] == "en"
    assert receipt["collectionMethod"] == "form/email-link"  # the newest entry's
    with database.read() as session:
        assert receipt["piiPrincipalId"] == find_subject_id(session, ANN)
    (controller,) = receipt["piiControllers"]
    assert controller["piiController"] == "Northwind Analytics (demo)"
    assert receipt["policyUrl"] == "https://northwind.example/privacy"
    (service,) = receipt["services"]
    by_key = {purpose["purposeKey"]: purpose for purpose in service["purposes"]}
    assert set(by_key) == {"profiling", "newsletter"}
    for purpose in by_key.values():
        assert set(purpose) >= KANTARA_PURPOSE_FIELDS | {"purpose"}
        assert purpose["consentType"] == "EXPLICIT"
        assert purpose["thirdPartyDisclosure"] is False
    assert by_key["profiling"]["purposeCategory"] == ["profiling"]
    assert by_key["newsletter"]["action"] == "confirmed"


def test_receipt_names_no_personal_data(ann_receipt: Path) -> None:
    text = ann_receipt.read_text()
    assert ANN not in text
    assert "198.51.100.23" not in text  # the evidence IP, committed to but not carried


def test_receipt_carries_entries_proofs_and_the_notice_agreed_to(
    ann_receipt: Path, vkey: str
) -> None:
    receipt = load(ann_receipt)
    proof = receipt["proof"]
    checkpoint = transparency.verify_checkpoint(proof["checkpoint"], [parse_verifier_key(vkey)])
    assert checkpoint.size == proof["tree_size"] == 264
    for item in proof["records"]:
        entry = item["entry"]
        canonical = canonical_bytes({field: entry[field] for field in ENTRY_FIELDS})
        assert entry_hash(canonical) == entry["hash"]
        nodes = [base64.b64decode(node) for node in item["inclusion_proof"]]
        merkle.verify_inclusion(
            merkle.leaf_hash(canonical), entry["seq"] - 1, checkpoint.size, nodes, checkpoint.root
        )
        if entry["notice_sha256"] is not None:
            assert (
                hashlib.sha256(item["notice_text"].encode()).hexdigest() == entry["notice_sha256"]
            )


def test_receipt_for_one_purpose(
    ann_receipt: Path, vkey: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "receipt", ANN, "--purpose", "newsletter")
    assert code == 0
    path = tmp_path / "newsletter.json"
    path.write_text(out)
    receipt = load(path)
    assert [r["entry"]["purpose"] for r in receipt["proof"]["records"]] == ["newsletter"]
    assert verify_file(capsys, path, vkey)[0] == 0


def test_receipt_covers_entries_made_after_the_last_checkpoint(
    database: Database,
    ann_receipt: Path,
    vkey: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A receipt asked for right after a change carries a fresh checkpoint that
    includes it; asked again with nothing new, it reuses the latest."""
    record(database, ANN, "profiling", ConsentAction.WITHDRAWN)
    code, out, _ = run_cli(capsys, "receipt", ANN, "--purpose", "profiling")
    assert code == 0
    path = tmp_path / "after.json"
    path.write_text(out)
    receipt = load(path)
    assert receipt["proof"]["tree_size"] == 265
    assert receipt["proof"]["records"][0]["entry"]["action"] == "withdrawn"
    assert verify_file(capsys, path, vkey)[0] == 0
    with database.read() as session:
        sizes = [c.size for c in transparency.list_checkpoints(session.connection())]
    assert sizes == [265, 264]
    assert run_cli(capsys, "receipt", ANN)[0] == 0
    with database.read() as session:
        assert len(transparency.list_checkpoints(session.connection())) == 2


@pytest.mark.usefixtures("ann_receipt")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["nobody@example.com"], "no lead with email", id="unknown-lead"),
        pytest.param([ANN, "--purpose", "sale_sharing"], "no consent records", id="no-record"),
        pytest.param(["not an email"], "email", id="not-an-email"),
        pytest.param([ANN, "extra"], "usage", id="two-emails"),
        pytest.param(["verify"], "usage", id="verify-without-file"),
    ],
)
def test_receipt_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_cli(capsys, "receipt", *argv)
    assert code == 2
    assert message in err
    assert out == ""


# --- keys -------------------------------------------------------------------------------------


def test_receipt_from_another_key_fails(
    ann_receipt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = CheckpointSigner.generate("testserver/consent-ledger").verifier_key.encode()
    code, out, _ = verify_file(capsys, ann_receipt, stranger)
    assert code == 1
    assert out.startswith("RECEIPT INVALID: checkpoint: note has no signature by a trusted key")


def test_receipt_verifies_with_the_local_key_when_none_is_given(
    ann_receipt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify_file(capsys, ann_receipt)[0] == 0


def test_receipt_verify_needs_a_key_somewhere(
    ann_receipt: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_KEY_FILE", str(tmp_path / "no-key-here"))
    code, _, err = verify_file(capsys, ann_receipt)
    assert code == 2
    assert "--key" in err
    assert not (tmp_path / "no-key-here").exists()


@pytest.mark.parametrize("key", ["", "garbage", "a+b+c", "name+00000000+AAAA"])
def test_malformed_key_is_a_usage_error(
    ann_receipt: Path, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = verify_file(capsys, ann_receipt, key)
    assert code == 2
    assert "--key" in err


def test_receipt_verifies_after_a_key_rotation(
    ann_receipt: Path,
    vkey: str,
    settings: Settings,
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Old receipts keep verifying with the retired key; new ones need the new key."""
    settings.checkpoint_key_file.unlink()
    new = transparency.load_signer(settings)
    # A rotation names the old key as retired; without that the new key would fork the
    # log, and signing is refused (tests/consent_ledger/test_checkpoint_keys.py).
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_RETIRED_KEYS", vkey)
    record(database, ANN, "profiling", ConsentAction.WITHDRAWN)
    code, out, _ = run_cli(capsys, "receipt", ANN)
    assert code == 0
    fresh = tmp_path / "fresh.json"
    fresh.write_text(out)
    new_key = new.verifier_key.encode()
    assert verify_file(capsys, ann_receipt, new_key, vkey)[0] == 0
    assert verify_file(capsys, fresh, new_key, vkey)[0] == 0
    assert verify_file(capsys, fresh, vkey)[0] == 1
    assert verify_file(capsys, ann_receipt, new_key)[0] == 1


# --- any change fails -------------------------------------------------------------------------


def _flip(text: str, position: int | None = None) -> str:
    """``text`` with one character changed to another of the same kind."""
    index = len(text) // 2 if position is None else position
    char = text[index]
    if char.isdigit():
        new = str((int(char) + 1) % 10)
    elif char.isalpha():
        new = chr(ord(char) + 1) if char not in "zZ" else chr(ord(char) - 1)
    else:
        new = "x"
    return text[:index] + new + text[index + 1 :]


def _set(path: str, change: Callable[[Any], Any]) -> Callable[[Receipt], None]:
    """A mutation of the value at ``path`` (dotted; numbers index lists)."""
    *parents, last = [int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")]

    def mutate(receipt: Receipt) -> None:
        node: Any = receipt
        for key in parents:
            node = node[key]
        node[last] = change(node[last])

    return mutate


def _checkpoint_line(number: int) -> Callable[[Any], Any]:
    def change(note: str) -> str:
        lines = note.split("\n")
        lines[number] = _flip(lines[number])
        return "\n".join(lines)

    return change


MUTATIONS = [
    # the ledger entry
    pytest.param(_set("proof.records.0.entry.subject_id", _flip), id="entry-subject"),
    pytest.param(_set("proof.records.0.entry.action", lambda _: "withdrawn"), id="entry-action"),
    pytest.param(_set("proof.records.0.entry.occurred_at", _flip), id="entry-time"),
    pytest.param(_set("proof.records.0.entry.seq", lambda n: n + 1), id="entry-seq"),
    pytest.param(_set("proof.records.1.entry.hash", _flip), id="entry-hash"),
    pytest.param(_set("proof.records.0.entry.notice_sha256", _flip), id="entry-notice"),
    pytest.param(_set("proof.records.0.notice_text", lambda t: t + "!"), id="notice-text"),
    pytest.param(_set("proof.records.0.leaf_index", lambda n: n + 1), id="leaf-index"),
    # the inclusion proof
    pytest.param(_set("proof.records.0.inclusion_proof.0", _flip), id="proof-first-node"),
    pytest.param(_set("proof.records.1.inclusion_proof.-1", _flip), id="proof-last-node"),
    pytest.param(_set("proof.records.0.inclusion_proof", lambda p: p[:-1]), id="proof-shorter"),
    pytest.param(_set("proof.records.0.inclusion_proof", lambda p: [*p, p[0]]), id="proof-longer"),
    pytest.param(_set("proof.tree_size", lambda n: n - 1), id="tree-size"),
    # the checkpoint
    pytest.param(_set("proof.checkpoint", _checkpoint_line(0)), id="checkpoint-origin"),
    pytest.param(_set("proof.checkpoint", _checkpoint_line(1)), id="checkpoint-size"),
    pytest.param(_set("proof.checkpoint", _checkpoint_line(2)), id="checkpoint-root"),
    pytest.param(_set("proof.checkpoint", _checkpoint_line(4)), id="checkpoint-signature"),
    # the Kantara fields
    pytest.param(_set("jurisdiction", lambda _: "US-CA"), id="kantara-jurisdiction"),
    pytest.param(_set("consentTimestamp", lambda n: n - 1), id="kantara-timestamp"),
    pytest.param(_set("consentReceiptID", _flip), id="kantara-receipt-id"),
    pytest.param(_set("piiPrincipalId", _flip), id="kantara-principal"),
    pytest.param(_set("policyUrl", _flip), id="kantara-policy-url"),
    pytest.param(_set("language", lambda _: "de"), id="kantara-language"),
    pytest.param(_set("piiControllers.0.piiController", _flip), id="kantara-controller"),
    pytest.param(_set("services.0.purposes.0.purposeCategory.0", _flip), id="kantara-category"),
    pytest.param(
        _set("services.0.purposes.0.consentType", lambda _: "IMPLICIT"), id="kantara-type"
    ),
    pytest.param(
        _set("services.0.purposes.1.thirdPartyDisclosure", lambda b: not b), id="kantara-3rd-party"
    ),
    pytest.param(_set("services.0.purposes.1.termination", _flip), id="kantara-termination"),
    pytest.param(_set("services.0.purposes", lambda p: p[:1]), id="kantara-purpose-dropped"),
    # the receipt's own signature
    pytest.param(_set("signature.ed25519", _flip), id="signature-bytes"),
    pytest.param(_set("signature.key", _flip), id="signature-key"),
    pytest.param(lambda r: r.pop("signature"), id="signature-removed"),
    pytest.param(lambda r: r.update(extra="added"), id="field-added"),
    pytest.param(lambda r: r.pop("policyUrl"), id="field-removed"),
]


@pytest.mark.parametrize("mutate", MUTATIONS)
def test_any_change_fails_verification(
    ann_receipt: Path,
    vkey: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: Callable[[Receipt], None],
) -> None:
    receipt = load(ann_receipt)
    original = copy.deepcopy(receipt)
    mutate(receipt)
    assert receipt != original
    forged = tmp_path / "forged.json"
    forged.write_bytes(orjson.dumps(receipt, option=orjson.OPT_INDENT_2))
    code, out, _ = verify_file(capsys, forged, vkey)
    assert code == 1
    assert out.startswith("RECEIPT INVALID: ")


def test_every_bit_flip_of_the_file_fails_or_changes_nothing(ann_receipt: Path, vkey: str) -> None:
    """Each byte of the receipt file, in turn, with its lowest bit flipped: the result
    is not JSON, or verifies as exactly the same receipt, or is rejected."""
    keys = [parse_verifier_key(vkey)]
    data = orjson.dumps(load(ann_receipt))  # compact: nearly every byte is meaningful
    original = orjson.loads(data)
    rejected = 0
    for position in range(len(data)):
        changed = bytearray(data)
        changed[position] ^= 1
        try:
            receipt = orjson.loads(bytes(changed))
        except orjson.JSONDecodeError:
            rejected += 1
            continue
        if receipt == original:
            continue  # e.g. a digit of a float spelled the same; nothing changed
        with pytest.raises(receipts.ReceiptError):
            receipts.verify_receipt(receipt, keys)
        rejected += 1
    assert rejected == len(data)


# --- each layer holds on its own: forgeries signed with the real key -----------------------


def _resign(receipt: Receipt, signer: CheckpointSigner) -> None:
    body = {key: value for key, value in receipt.items() if key != "signature"}
    signature = signer.private_key.sign(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    receipt["signature"] = {
        "key": signer.verifier_key.encode(),
        "ed25519": base64.b64encode(signature).decode(),
    }


def _reseal(entry: dict[str, Any]) -> None:
    entry["hash"] = entry_hash(canonical_bytes({field: entry[field] for field in ENTRY_FIELDS}))


def _forge_entry_and_hash(receipt: Receipt) -> None:
    entry = receipt["proof"]["records"][0]["entry"]
    entry["action"] = "withdrawn"
    _reseal(entry)


def _claim_another_subject(receipt: Receipt) -> None:
    receipt["piiPrincipalId"] = "0" * 32


LAYERS = [
    pytest.param(
        _set("proof.records.0.entry.action", lambda _: "withdrawn"),
        "entry does not match its hash",
        id="entry-without-its-hash",
    ),
    pytest.param(_forge_entry_and_hash, "inclusion proof fails", id="entry-resealed"),
    pytest.param(
        _set("proof.records.0.inclusion_proof.0", _flip), "inclusion proof fails", id="proof-node"
    ),
    pytest.param(
        _set("proof.records.0.inclusion_proof", lambda p: p[:-1]),
        "inclusion proof fails",
        id="proof-shorter",
    ),
    pytest.param(
        _set("proof.records.0.inclusion_proof.0", lambda _: "not base64!"),
        "not base64",
        id="proof-node-not-base64",
    ),
    pytest.param(
        _set("proof.records.0.leaf_index", lambda n: n + 1), "leaf index", id="leaf-index"
    ),
    pytest.param(_set("proof.tree_size", lambda n: n + 1), "tree_size", id="tree-size"),
    pytest.param(
        _set("proof.checkpoint", _checkpoint_line(2)), "checkpoint: ", id="checkpoint-root"
    ),
    pytest.param(_claim_another_subject, "another subject", id="another-subject"),
    pytest.param(_set("proof.records", lambda _: []), "no records", id="no-records"),
    pytest.param(
        _set("proof.records.0.entry", lambda e: {k: v for k, v in e.items() if k != "locale"}),
        "entry fields differ",
        id="entry-field-missing",
    ),
    pytest.param(
        _set("proof.records.0.notice_text", lambda _: "You agree to everything."),
        "notice",
        id="notice-text-swapped",
    ),
    pytest.param(
        _set("services.0.purposes.0.action", lambda _: "withdrawn"),
        "purpose",
        id="kantara-purpose-disagrees",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), LAYERS)
def test_each_check_holds_without_the_receipt_signature(
    ann_receipt: Path,
    signer: CheckpointSigner,
    mutate: Callable[[Receipt], None],
    message: str,
) -> None:
    """Even a receipt the service itself signed fails if its entry, proof or checkpoint
    is wrong: the outer signature is not the only line of defence."""
    receipt = load(ann_receipt)
    mutate(receipt)
    _resign(receipt, signer)
    with pytest.raises(receipts.ReceiptError, match=message):
        receipts.verify_receipt(receipt, [signer.verifier_key])


# --- garbage ----------------------------------------------------------------------------------


def _deeply_nested(receipt: Receipt) -> None:
    nested: Any = "deep"
    for _ in range(300):
        nested = [nested]
    receipt["extra"] = nested


GARBAGE = [
    pytest.param(b"", id="empty"),
    pytest.param(b"not json at all", id="text"),
    pytest.param(b"\xff\xfe\x00\x01binary", id="binary"),
    pytest.param(b"null", id="null"),
    pytest.param(b"[]", id="list"),
    pytest.param(b'"a string"', id="string"),
    pytest.param(b"{}", id="empty-object"),
    pytest.param(b'{"proof": 1}', id="proof-not-object"),
    pytest.param(b'{"proof": {"checkpoint": "x"}}', id="bad-checkpoint"),
    pytest.param(b'{"proof": {"checkpoint": null, "records": "x"}}', id="null-checkpoint"),
    pytest.param(b"[" * 5000 + b"]" * 5000, id="too-deep-for-json"),
    pytest.param(b'{"a": 1e999999}', id="huge-number"),
]


@pytest.mark.usefixtures("ann_receipt")
@pytest.mark.parametrize("content", GARBAGE)
def test_garbage_files_are_rejected_cleanly(
    tmp_path: Path, vkey: str, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "garbage.json"
    path.write_bytes(content)
    code, out, _ = verify_file(capsys, path, vkey)
    assert code == 1
    assert out.startswith("RECEIPT INVALID: ")


def test_missing_file_is_rejected_cleanly(
    ann_receipt: Path, vkey: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = verify_file(capsys, tmp_path / "nothing.json", vkey)
    assert code == 1
    assert "cannot read" in out


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_deeply_nested, id="nested-300-deep"),
        pytest.param(_set("proof.records.0.entry.seq", lambda _: 2**64 - 1), id="seq-u64-max"),
        pytest.param(_set("proof.records.0.entry.seq", lambda _: -5), id="seq-negative"),
        pytest.param(_set("proof.records.0.entry.seq", lambda _: True), id="seq-bool"),
        pytest.param(_set("proof.records.0.inclusion_proof", lambda _: None), id="proof-null"),
        pytest.param(_set("proof.records.0.inclusion_proof.0", lambda _: 7), id="node-number"),
        pytest.param(_set("proof.records.0.inclusion_proof.0", lambda _: "é"), id="node-unicode"),
        pytest.param(_set("proof.records.0", lambda _: "x"), id="record-string"),
        pytest.param(_set("proof.records.0.entry", lambda _: []), id="entry-list"),
        pytest.param(_set("proof.records.0.entry.occurred_at", lambda _: [[1]]), id="field-list"),
        pytest.param(_set("signature", lambda _: {"key": 1, "ed25519": None}), id="sig-types"),
        pytest.param(_set("signature.ed25519", lambda _: "AAAA"), id="sig-short"),
    ],
)
def test_hostile_receipts_signed_with_the_real_key_are_rejected_cleanly(
    ann_receipt: Path,
    signer: CheckpointSigner,
    vkey: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: Callable[[Receipt], None],
) -> None:
    receipt = load(ann_receipt)
    signature = copy.deepcopy(receipt["signature"])
    mutate(receipt)
    if receipt["signature"] == signature and mutate is not _deeply_nested:
        _resign(receipt, signer)  # reach the checks behind the receipt's signature
    with pytest.raises(receipts.ReceiptError):
        receipts.verify_receipt(receipt, [signer.verifier_key])
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(receipt))  # the standard library writes 300 levels; orjson not
    code, out, _ = verify_file(capsys, path, vkey)
    assert code == 1
    assert out.startswith("RECEIPT INVALID: ")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_fuzzed_receipts_raise_only_receipt_error(
    ann_receipt: Path, signer: CheckpointSigner, data: st.DataObject
) -> None:
    """Any value anywhere in a receipt, re-signed or not: a ReceiptError or a pass."""
    receipt = load(ann_receipt)
    paths = _paths(receipt)
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        parent, key = data.draw(st.sampled_from(paths), label="where")
        parent[key] = data.draw(JSON_VALUES, label="value")
        paths = _paths(receipt)
    if data.draw(st.booleans(), label="re-signed"):
        _resign(receipt, signer)
    with contextlib.suppress(receipts.ReceiptError):
        receipts.verify_receipt(receipt, [signer.verifier_key])


def _paths(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON value."""
    found: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        found.append((node, key))
        if isinstance(value, dict | list):
            found += _paths(value)
    return found


@given(value=JSON_VALUES)
@settings(max_examples=200, deadline=None)
def test_arbitrary_json_raises_only_receipt_error(value: Any) -> None:
    keys = [CheckpointSigner.generate("k").verifier_key]
    with pytest.raises(receipts.ReceiptError):
        receipts.verify_receipt(value, keys)


# --- erasure ----------------------------------------------------------------------------------


def test_receipts_and_proofs_survive_erasure(
    ann_receipt: Path,
    vkey: str,
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    app_client: TestClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("consent_ledger.erasure")
    receipt = load(ann_receipt)
    with database.read() as session:
        subject_id = find_subject_id(session, ANN)
    assert subject_id is not None
    code, out, err = run_cli(capsys, "erase", ANN)
    assert code == 0, err
    # The receipt made before still verifies offline ...
    assert verify_file(capsys, ann_receipt, vkey)[0] == 0
    # ... its checkpoint is still one the ledger grew from ...
    saved = tmp_path / "receipt-checkpoint.txt"
    saved.write_text(receipt["proof"]["checkpoint"])
    code, out, _ = run_cli(capsys, "ledger", "verify", "--quiet", "--checkpoint", str(saved))
    assert code == 0, out
    # ... and the ledger still serves the very same proofs for it.
    size = receipt["proof"]["tree_size"]
    for item in receipt["proof"]["records"]:
        response = app_client.get(
            "/ledger/proof/inclusion", params={"index": item["leaf_index"], "size": size}
        )
        assert response.status_code == 200
        assert response.json()["proof"] == item["inclusion_proof"]
    # A receipt made after the erasure shows the erasure, and verifies too.
    after = receipts.build_receipt(database, settings, signer, subject_id)
    check = receipts.verify_receipt(after, [signer.verifier_key])
    assert sorted(check.purposes) == ["newsletter", "profiling"]
    assert {r["entry"]["action"] for r in after["proof"]["records"]} == {"erased"}
    assert ANN not in orjson.dumps(after).decode()
    # The CLI can no longer find the lead by email: the email is gone.
    code, _, err = run_cli(capsys, "receipt", ANN)
    assert code == 2
    assert "no lead" in err


def test_receipt_of_a_lead_with_many_purposes_is_one_signature(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    entries = [
        record(database, ANN, purpose) for purpose in ("newsletter", "product_updates", "profiling")
    ]
    record(database, ANN, "sale_sharing", ConsentAction.REFUSED, jurisdiction="US-CA")
    receipt = receipts.build_receipt(database, settings, signer, entries[0].subject_id)
    check = receipts.verify_receipt(receipt, [signer.verifier_key])
    assert sorted(check.purposes) == ["newsletter", "product_updates", "profiling", "sale_sharing"]
    purposes = {p["purposeKey"]: p for p in receipt["services"][0]["purposes"]}
    assert purposes["sale_sharing"]["thirdPartyDisclosure"] is True
    assert purposes["sale_sharing"]["consentType"] == "IMPLICIT"
    assert receipt["jurisdiction"] == "US-CA"
    again = receipts.build_receipt(database, settings, signer, entries[0].subject_id)
    assert again["consentReceiptID"] == receipt["consentReceiptID"]  # same entries, same head
