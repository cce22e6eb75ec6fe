"""Public transparency routes: checkpoints, the public key, inclusion and consistency proofs.

Anyone may call them (no API key): they reveal hashes and tree sizes, nothing personal.
Hashes travel base64-encoded, as in the checkpoints themselves.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from consent_ledger.entries import format_timestamp
from consent_ledger.proofs import merkle, transparency, tree
from consent_ledger.proofs.checkpoints import CheckpointSigner
from zeroparty.db import Database
from zeroparty.errors import InvalidInput, NotFound
from zeroparty.http import JSONResponse
from zeroparty.settings import Settings

MAX_PAGE = 1000


MAX_POSITION = 2**63 - 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _int(params: Mapping[str, str], name: str, *, minimum: int = 0) -> int:
    raw = params.get(name)
    # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        raise InvalidInput(
            f"{name}: a whole number is required", fields={name: "a whole number is required"}
        )
    value = int(raw)
    if value < minimum:
        raise InvalidInput(f"{name}: at least {minimum}", fields={name: f"at least {minimum}"})
    if value > MAX_POSITION:
        # Beyond any ledger, and beyond what the databases' 64-bit integers can bind.
        raise InvalidInput(f"{name}: too large", fields={name: f"at most {MAX_POSITION}"})
    return value


def _context(request: Request) -> tuple[Database, Settings, CheckpointSigner]:
    state = request.app.state
    return state.database, state.settings, state.checkpoint_signer.get()


def get_checkpoint(request: Request) -> PlainTextResponse:
    database, settings, signer = _context(request)
    with database.read() as session:
        latest = transparency.latest_checkpoint(session.connection())
    if latest is None or transparency.checkpoint_due(database, settings):
        made = transparency.make_checkpoint(database, settings, signer)
        latest = made or latest
    if latest is None:
        raise NotFound("no checkpoint yet: the ledger is empty")
    return PlainTextResponse(latest.note, headers={"cache-control": "no-cache"})


def get_checkpoints(request: Request) -> JSONResponse:
    database, _, _ = _context(request)
    params = request.query_params
    limit = min(_int(params, "limit", minimum=1), MAX_PAGE) if "limit" in params else 100
    before = _int(params, "before", minimum=1) if "before" in params else None
    with database.read() as session:
        rows = transparency.list_checkpoints(session.connection(), limit, before)
    return JSONResponse(
        {
            "checkpoints": [
                {
                    "size": row.size,
                    "root": _b64(bytes.fromhex(row.root)),
                    "key_name": row.key_name,
                    "created_at": format_timestamp(row.created_at),
                    "note": row.note,
                }
                for row in rows
            ],
            "next_before": rows[-1].size if len(rows) == limit else None,
        }
    )


def get_key(request: Request) -> PlainTextResponse:
    _, settings, signer = _context(request)
    keys = transparency.verifier_keys(settings, signer)
    return PlainTextResponse("".join(key.encode() + "\n" for key in keys))


def _size_within_ledger(database: Database, size: int, name: str) -> None:
    with database.read() as session:
        current = tree.ledger_size(session.connection())
    if size > current:
        reason = f"the ledger has {current} entries"
        raise InvalidInput(f"{name}: {reason}", fields={name: reason})


def get_inclusion_proof(request: Request) -> JSONResponse:
    database, _, _ = _context(request)
    index = _int(request.query_params, "index")
    size = _int(request.query_params, "size", minimum=1)
    if index >= size:
        raise InvalidInput("index: must be smaller than size", fields={"index": "must be < size"})
    _size_within_ledger(database, size, "size")
    with database.read() as session:
        connection = session.connection()
        proof = tree.inclusion_proof(connection, index, size)
        root = tree.root(connection, size)
        (leaf,) = tree.fetch_leaf_hashes(connection, index, index + 1)
    return JSONResponse(
        {
            "index": index,
            "size": size,
            "leaf_hash": _b64(leaf),
            "root": _b64(root),
            "proof": [_b64(node) for node in proof],
        }
    )


def get_consistency_proof(request: Request) -> JSONResponse:
    """RFC 9162 §4.4 get-sth-consistency, between sizes the ledger has reached.

    ``from == to`` answers an empty proof and two equal roots (§2.1.4.1:
    ``SUBPROOF(m, D[m], true) = {}``). ``from`` 0 is refused: §2.1.4.1 defines a proof
    only from a non-empty tree, and no head of the empty ledger is ever signed. ``from``
    beyond ``to``, or ``to`` beyond the ledger, is refused too.
    """
    database, _, _ = _context(request)
    old = _int(request.query_params, "from", minimum=1)
    new = _int(request.query_params, "to", minimum=1)
    if old > new:
        raise InvalidInput("from: must not exceed to", fields={"from": "must be <= to"})
    _size_within_ledger(database, new, "to")
    with database.read() as session:
        connection = session.connection()
        proof = tree.consistency_proof(connection, old, new)
        old_root, new_root = tree.root(connection, old), tree.root(connection, new)
    merkle.verify_consistency(old, new, proof, old_root, new_root)  # never serve a bad proof
    return JSONResponse(
        {
            "from": old,
            "to": new,
            "old_root": _b64(old_root),
            "new_root": _b64(new_root),
            "proof": [_b64(node) for node in proof],
        }
    )


routes = [
    Route("/ledger/checkpoint", get_checkpoint, methods=["GET"]),
    Route("/ledger/checkpoints", get_checkpoints, methods=["GET"]),
    Route("/ledger/key", get_key, methods=["GET"]),
    Route("/ledger/proof/inclusion", get_inclusion_proof, methods=["GET"]),
    Route("/ledger/proof/consistency", get_consistency_proof, methods=["GET"]),
]
