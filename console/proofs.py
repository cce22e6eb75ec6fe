"""A proof of consent a regulator can read: for one lead and purpose, the latest ledger
entry, the notice text it names, its inclusion in the signed Merkle tree, and the
signed checkpoint; the same as the downloadable consent receipt, checked here with the
ledger's public keys before it is shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consent_ledger.proofs import transparency
from consent_ledger.proofs.checkpoints import CheckpointSigner
from consent_ledger.proofs.receipts import ReceiptError, build_receipt, verify_receipt
from zeroparty.db import Database
from zeroparty.settings import Settings


@dataclass(frozen=True, slots=True)
class ProofPage:
    subject_id: str
    purpose: str
    record: dict[str, Any]
    service: dict[str, Any]
    tree_size: int
    checkpoint: str
    public_key: str
    verified: bool
    problem: str | None


def receipt(
    database: Database, settings: Settings, signer: CheckpointSigner, subject_id: str, purpose: str
) -> dict[str, Any]:
    return build_receipt(database, settings, signer, subject_id, purpose)


def proof_page(
    database: Database, settings: Settings, signer: CheckpointSigner, subject_id: str, purpose: str
) -> ProofPage:
    body = build_receipt(database, settings, signer, subject_id, purpose)
    problem = None
    try:
        verify_receipt(body, transparency.verifier_keys(settings, signer))
    except ReceiptError as exc:
        problem = str(exc)
    proof = body["proof"]
    return ProofPage(
        subject_id=subject_id,
        purpose=purpose,
        record=proof["records"][0],
        service=body["services"][0]["purposes"][0],
        tree_size=proof["tree_size"],
        checkpoint=proof["checkpoint"],
        public_key=body["publicKey"],
        verified=problem is None,
        problem=problem,
    )
