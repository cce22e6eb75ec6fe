"""Consent receipts: Kantara Consent Receipt v1.1 fields plus a proof anyone can check.

A receipt names the lead only by its pseudonymous subject id (it outlives erasure) and
carries, per purpose, the lead's latest ledger entry, that entry's RFC 6962 inclusion
proof, and the signed checkpoint the proof leads to. The whole receipt is signed with
the checkpoint key, so a changed byte anywhere (a Kantara field, the entry, the proof,
the checkpoint) fails :func:`verify_receipt`, which needs nothing but the public key.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from cryptography.exceptions import InvalidSignature
from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from consent_ledger.actions import Mechanism
from consent_ledger.entries import ENTRY_FIELDS, canonical_bytes, entry_hash
from consent_ledger.models import ConsentEvent, NoticeVersion, Purpose, SubjectProfile
from consent_ledger.proofs import merkle, transparency, tree
from consent_ledger.proofs.checkpoints import (
    CheckpointError,
    CheckpointSigner,
    VerifierKey,
    parse_verifier_key,
    verify_checkpoint,
)
from consent_ledger.proofs.receipt_text import (
    RECEIPT_CONTENT_TYPE,
    RECEIPT_FILENAME,
    ReceiptLine,
    receipt_summary,
    sentences_in,
)
from consent_ledger.stored import entry_of_row, entry_select
from zeroparty import i18n
from zeroparty.db import Database
from zeroparty.errors import NotFound
from zeroparty.mail import (
    Attachment,
    LeadLinker,
    Mail,
    in_language,
    queue_mail,
    with_lead_links,
)
from zeroparty.settings import Settings
from zeroparty.site_info import site_identity

RECEIPT_VERSION = "KI-CR-v1.1.0"
PROOF_FORMAT = "zeroparty-ledger-proof-v1"
_ev = cast(Table, ConsentEvent.__table__)


class ReceiptError(ValueError):
    """A receipt that does not verify; the message says which part failed."""


class NoConsentRecords(NotFound):
    pass


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    subject_id: str
    purposes: tuple[str, ...]
    tree_size: int
    key_name: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ReceiptError(f"{what}: not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ReceiptError(f"{what}: not base64") from exc


def _latest_entries(session: Session, subject_id: str, purpose: str | None) -> list[Any]:
    latest = (
        select(func.max(_ev.c.seq))
        .where(_ev.c.subject_id == subject_id)
        .group_by(_ev.c.purpose_key)
    )
    if purpose is not None:
        latest = latest.where(_ev.c.purpose_key == purpose)
    stmt = entry_select().where(_ev.c.seq.in_(latest.scalar_subquery())).order_by(_ev.c.seq)
    return [entry_of_row(row) for row in session.connection().execute(stmt)]


def _signing_bytes(receipt: dict[str, Any]) -> bytes:
    body = {key: value for key, value in receipt.items() if key != "signature"}
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError: e.g. nested deeper than it writes
        raise ReceiptError(f"the receipt cannot be serialised: {exc}") from exc


def build_receipt(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    subject_id: str,
    purpose: str | None = None,
) -> dict[str, Any]:
    """A signed receipt for the subject's latest entry per purpose (or one purpose).

    Publishes a fresh checkpoint first when the newest one does not cover the entries.
    """
    with database.read() as session:
        entries = _latest_entries(session, subject_id, purpose)
        if not entries:
            raise NoConsentRecords(
                "no consent records for this lead"
                + (f" and purpose {purpose!r}" if purpose else "")
            )
        identity = site_identity(session)
        latest = transparency.latest_checkpoint(session.connection())
    if latest is None or latest.size < max(entry.seq for entry in entries):
        transparency.make_checkpoint(database, settings, signer)
    with database.read() as session:
        connection = session.connection()
        checkpoint = transparency.latest_checkpoint(connection)
        assert checkpoint is not None
        purposes = {p.key: p for p in session.execute(select(Purpose)).scalars()}
        notices = {
            n.sha256: n.text
            for n in session.execute(
                select(NoticeVersion).where(
                    NoticeVersion.sha256.in_([e.notice_sha256 for e in entries if e.notice_sha256])
                )
            ).scalars()
        }
        records = []
        for entry in entries:
            proof = tree.inclusion_proof(connection, entry.seq - 1, checkpoint.size)
            records.append(
                {
                    "entry": entry.as_json(),
                    "notice_text": notices.get(entry.notice_sha256 or ""),
                    "leaf_index": entry.seq - 1,
                    "inclusion_proof": [_b64(node) for node in proof],
                }
            )
    newest = max(entries, key=lambda e: e.occurred_at)
    language = newest.locale or identity.default_locale
    receipt: dict[str, Any] = {
        "version": RECEIPT_VERSION,
        "jurisdiction": newest.jurisdiction or "",
        "consentTimestamp": int(newest.occurred_at.timestamp()),
        "collectionMethod": f"{newest.source}/{newest.method}",
        # Derived from what the receipt proves, so the same entries under the same
        # checkpoint give the same ID; the version bits make it the UUID-4 that Kantara
        # CR v1.1 asks for (RFC 4122 §4.4: random bits, here from SHA-256).
        "consentReceiptID": str(
            uuid.UUID(
                bytes=hashlib.sha256(
                    "".join(e.hash for e in entries).encode() + checkpoint.root.encode()
                ).digest()[:16],
                version=4,
            )
        ),
        "publicKey": signer.verifier_key.encode(),
        "language": language,
        "piiPrincipalId": subject_id,
        "piiControllers": [
            {
                "piiController": identity.name,
                "contact": identity.controller,
                "address": identity.controller,
                "email": "",
                "phone": "",
                "piiControllerUrl": identity.policy_url,
            }
        ],
        "policyUrl": identity.policy_url,
        "services": [
            {
                "service": identity.name,
                "purposes": [
                    _purpose_json(
                        purposes.get(record["entry"]["purpose"]), record["entry"], language
                    )
                    for record in records
                ],
            }
        ],
        "sensitive": False,
        "spiCat": [],
        "proof": {
            "format": PROOF_FORMAT,
            "canonical_form": "JSON, keys sorted, no whitespace, UTF-8; hash = SHA-256 of it; "
            "Merkle leaf = the same bytes (RFC 6962)",
            "tree_size": checkpoint.size,
            "checkpoint": checkpoint.note,
            "records": records,
        },
    }
    signature = signer.private_key.sign(_signing_bytes(receipt))
    receipt["signature"] = {"key": signer.verifier_key.encode(), "ed25519": _b64(signature)}
    return receipt


def _purpose_json(purpose: Purpose | None, entry: dict[str, Any], language: str) -> dict[str, Any]:
    """One purpose as Kantara CR v1.1 names it, its title in the receipt's language."""
    category = purpose.category if purpose else ""
    return {
        "purpose": (
            i18n.site_text(purpose.title, purpose.translations, language)
            if purpose
            else entry["purpose"]
        ),
        "purposeKey": entry["purpose"],
        "purposeCategory": [category],
        "consentType": "EXPLICIT"
        if purpose is None or purpose.mechanism == Mechanism.OPT_IN
        else "IMPLICIT",
        "purposeTermination": "until withdrawn",
        "termination": "until withdrawn, in one step, at the preference center",
        "primaryPurpose": False,
        "thirdPartyDisclosure": category == "sale-or-sharing",
        "thirdPartyName": "",
        "action": entry["action"],
        "notice_sha256": entry["notice_sha256"],
    }


def verify_receipt(receipt: object, trusted_keys: Sequence[VerifierKey]) -> ReceiptCheck:
    """Check a receipt offline with only public keys; raise :class:`ReceiptError`.

    Checks, in order: the checkpoint's signature (and that it is this log's); the
    receipt's own signature; for each record, the entry's hash over its canonical form,
    its inclusion proof against the checkpoint's root, that the notice text carried is
    the one the entry names by hash, and that the Kantara fields name the same subject
    and, purpose by purpose, say what the entries say.
    """
    if not isinstance(receipt, dict):
        raise ReceiptError("a receipt is a JSON object")
    proof = receipt.get("proof")
    if not isinstance(proof, dict):
        raise ReceiptError("proof: missing")
    try:
        checkpoint = verify_checkpoint(str(proof.get("checkpoint", "")), trusted_keys)
    except CheckpointError as exc:
        raise ReceiptError(f"checkpoint: {exc}") from exc
    if proof.get("tree_size") != checkpoint.size:
        raise ReceiptError("proof: tree_size differs from the checkpoint's")
    signature = receipt.get("signature")
    if not isinstance(signature, dict):
        raise ReceiptError("signature: missing")
    try:
        signing_key = parse_verifier_key(str(signature.get("key", "")))
    except CheckpointError as exc:
        raise ReceiptError(f"signature: {exc}") from exc
    trusted = {(k.name, k.key_id): k for k in trusted_keys}
    key = trusted.get((signing_key.name, signing_key.key_id))
    if key is None:
        raise ReceiptError("signature: made by a key you do not trust")
    try:
        key.public_key.verify(
            _unb64(signature.get("ed25519"), "signature"), _signing_bytes(receipt)
        )
    except InvalidSignature as exc:
        raise ReceiptError("signature: the receipt was changed after it was signed") from exc
    records = proof.get("records")
    if not isinstance(records, list) or not records:
        raise ReceiptError("proof: no records")
    subject = receipt.get("piiPrincipalId")
    claims = _purpose_claims(receipt)
    if len(claims) != len(records):
        raise ReceiptError("services: the purposes listed differ from the records")
    purposes: list[str] = []
    for number, (record, claim) in enumerate(zip(records, claims, strict=True)):
        purposes.append(
            _check_record(record, number, checkpoint.size, checkpoint.root, subject, claim)
        )
    return ReceiptCheck(str(subject), tuple(purposes), checkpoint.size, checkpoint.key_name)


def _purpose_claims(receipt: dict[str, Any]) -> list[object]:
    """The Kantara purposes of every service, in order (one per record)."""
    services = receipt.get("services")
    if not isinstance(services, list):
        raise ReceiptError("services: missing")
    claims: list[object] = []
    for service in services:
        purposes = service.get("purposes") if isinstance(service, dict) else None
        if not isinstance(purposes, list):
            raise ReceiptError("services: a service without purposes")
        claims.extend(purposes)
    return claims


def _check_record(
    record: object, number: int, size: int, root: bytes, subject: object, claim: object
) -> str:
    where = f"record {number}"
    if not isinstance(record, dict) or not isinstance(record.get("entry"), dict):
        raise ReceiptError(f"{where}: malformed")
    entry = record["entry"]
    if set(entry) != {*ENTRY_FIELDS, "hash"}:
        raise ReceiptError(f"{where}: entry fields differ from the ledger's")
    try:
        canonical = canonical_bytes({field: entry[field] for field in ENTRY_FIELDS})
    except TypeError as exc:  # orjson.JSONEncodeError
        raise ReceiptError(f"{where}: entry cannot be serialised") from exc
    if entry_hash(canonical) != entry["hash"]:
        raise ReceiptError(f"{where}: entry does not match its hash")
    if entry["subject_id"] != subject:
        raise ReceiptError(f"{where}: entry is about another subject")
    seq = entry["seq"]
    if type(seq) is not int or record.get("leaf_index") != seq - 1:
        raise ReceiptError(f"{where}: leaf index does not match the entry")
    nodes = record.get("inclusion_proof")
    if not isinstance(nodes, list):
        raise ReceiptError(f"{where}: inclusion_proof missing")
    proof = [_unb64(node, f"{where}: inclusion_proof") for node in nodes]
    try:
        merkle.verify_inclusion(merkle.leaf_hash(canonical), seq - 1, size, proof, root)
    except merkle.ProofError as exc:
        raise ReceiptError(f"{where}: inclusion proof fails: {exc}") from exc
    notice_text = record.get("notice_text")
    if notice_text is not None and (
        not isinstance(notice_text, str)
        or hashlib.sha256(notice_text.encode("utf-8", "surrogatepass")).hexdigest()
        != entry["notice_sha256"]
    ):
        raise ReceiptError(f"{where}: notice_text is not the notice the entry names")
    if not isinstance(claim, dict) or any(
        claim.get(key) != entry[field]
        for key, field in (
            ("purposeKey", "purpose"),
            ("action", "action"),
            ("notice_sha256", "notice_sha256"),
        )
    ):
        raise ReceiptError(f"{where}: the Kantara purpose differs from the entry")
    return str(entry["purpose"])


def receipt_file(receipt: dict[str, Any]) -> bytes:
    """The receipt as a file: the bytes ``zeroparty receipt`` prints (indented JSON,
    UTF-8, a final newline), which ``zeroparty receipt verify`` reads as they are."""
    return orjson.dumps(receipt, option=orjson.OPT_INDENT_2) + b"\n"


def _summary_lines(session: Session, receipt: dict[str, Any]) -> list[ReceiptLine]:
    """Per record, what the mail's text says: the purpose's title (as the receipt names
    it), the entry's action and time, the notice's version number (looked up here)."""
    records = receipt["proof"]["records"]
    claims = _purpose_claims(receipt)
    wanted = {
        (record["entry"]["purpose"], record["entry"]["notice_sha256"])
        for record in records
        if record["entry"]["notice_sha256"]
    }
    versions: dict[tuple[str, str], int] = {}
    if wanted:
        rows = session.execute(
            select(NoticeVersion.purpose_key, NoticeVersion.sha256, NoticeVersion.version).where(
                NoticeVersion.sha256.in_([sha for _, sha in wanted])
            )
        )
        versions = {(key, sha): version for key, sha, version in rows if (key, sha) in wanted}
    lines = []
    for record, claim in zip(records, claims, strict=True):
        entry = record["entry"]
        lines.append(
            ReceiptLine(
                purpose=str(cast(dict[str, Any], claim)["purpose"]),
                action=entry["action"],
                occurred_at=datetime.fromisoformat(entry["occurred_at"]),
                notice_sha256=entry["notice_sha256"],
                notice_version=versions.get((entry["purpose"], entry["notice_sha256"] or "")),
            )
        )
    return lines


def mail_receipt(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    subject_id: str,
    lead_links: LeadLinker | None = None,
) -> str | None:
    """Queue a mail to the lead with their signed receipt (after a confirmation).

    The text is a short summary (per purpose: what, when, which notice version; how to
    check the receipt); the receipt goes as the attachment ``consent-receipt.json``,
    the exact bytes ``zeroparty receipt verify`` accepts. Returns the queued mail's id
    (``None`` for an erased or unknown lead).
    """
    receipt = build_receipt(database, settings, signer, subject_id)
    attachment = Attachment(RECEIPT_FILENAME, RECEIPT_CONTENT_TYPE, receipt_file(receipt))
    with database.write() as session:
        profile = session.get(SubjectProfile, subject_id)
        if profile is None:
            return None
        # The mail speaks the receipt's language: the one the newest entry was made in.
        language = i18n.choose_language(i18n.languages(), recorded=str(receipt["language"]))
        sentences = sentences_in(language)
        text = receipt_summary(
            _summary_lines(session, receipt),
            receipt_id=receipt["consentReceiptID"],
            key_url=f"{settings.base_url}/ledger/key",
            sentences=sentences,
        )
        mail = Mail(
            to=profile.email,
            subject=sentences["subject"],
            text=text,
            headers=in_language(language),
            attachments=(attachment,),
        )
        if lead_links is not None:
            purposes = [record["entry"]["purpose"] for record in receipt["proof"]["records"]]
            mail = with_lead_links(mail, lead_links(session, subject_id, purposes))
        return queue_mail(session, mail, subject_id=subject_id)
