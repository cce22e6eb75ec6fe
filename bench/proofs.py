"""Proofs at scale: the Merkle root of a million entries, inclusion proofs, receipts.

On the synthetic SQLite ledger of :mod:`bench.synthetic_ledger` (1,000,000 entries;
``--quick``: 100,000), copied so the cached file is never changed:

1. **Tree root from scratch**: a child process (``python -m bench.proofs tree-root URL``)
   runs ``tree.extend_tree`` over an empty ``merkle_nodes`` and then ``tree.root``; wall
   time including interpreter start, peak RSS from the child's own ``ru_maxrss``
   (:mod:`bench.measured_process`). Bare baseline, measured the same way
   (``python -m bench.proofs bare-root URL``): one SQL query in ``seq`` order, the same
   canonical bytes (orjson, sorted keys, timestamps formatted by the database as
   :mod:`bench.bare_chain` does), ``SHA-256(0x00 || entry)`` leaves and the RFC 6962 fold
   inline with ``hashlib``. Both print the root; they must agree.
2. **Inclusion proof latency** at the full size, after ``extend_tree``: ``tree.inclusion_proof``
   for 1000 random leaves, each in its own read transaction as ``GET /ledger/proof/inclusion``
   does; p50/p99. Consistency proofs likewise (100 random old sizes), and the route itself
   through the app (``TestClient``) for the HTTP overhead.
3. **Receipt verification**: a receipt for one lead (four purposes) is built, then
   ``receipts.verify_receipt`` timed 300 times; bare baseline: the same two Ed25519
   verifications, entry hashes and audit-path folds written inline. The
   ``zeroparty receipt verify`` process is timed too (interpreter start included).
4. **Checkpoint audit**: ``transparency.verify_checkpoints`` (what ``ledger verify`` adds when
   checkpoints exist: every root recomputed from the entries, every stored tile checked).

Run alone: ``python -m bench.proofs [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, delete, select, text

from bench.bare_chain import COLUMNS, POSTGRES_TS, SQLITE_TS
from bench.databases import sqlite_url
from bench.ledger_verify import zeroparty_command
from bench.measured_process import ProcessRun, run_measured
from bench.report import Options, Row, ScenarioResult, parse_options
from bench.synthetic_ledger import cached_sqlite, email_of
from consent_ledger.models import MerkleNode
from consent_ledger.proofs import merkle, receipts, transparency, tree
from consent_ledger.proofs.checkpoints import CheckpointSigner
from consent_ledger.subjects import find_subject_id
from zeroparty.db import Database, normalise_url
from zeroparty.settings import Settings

FULL_ENTRIES = 1_000_000
QUICK_ENTRIES = 100_000
PROOFS = 1000
CONSISTENCY_PROOFS = 100
ROUTE_PROOFS = 200
RECEIPT_RUNS = 300
TIMEOUT_S = 1800.0
# The target, "milliseconds, not a scan", as a number: a typical (p50) proof
# under 10 ms, where a scan of a million entries takes seconds.
TARGET_PROOF_MS = 10.0
SEED = 6962
RECEIPT_LEAD = 42


# --- child processes --------------------------------------------------------------------


def child_tree_root(url: str) -> dict[str, Any]:
    """zeroparty's way: store every tile, then the root from the stored tree."""
    database = Database.from_url(url)
    try:
        with database.write() as session:
            connection = session.connection()
            size = tree.ledger_size(connection)
            tiles = tree.extend_tree(connection, size)
        with database.read() as session:
            root = tree.root(session.connection(), size)
    finally:
        database.dispose()
    return {"size": size, "tiles": tiles, "root": root.hex()}


def child_bare_root(url: str) -> dict[str, Any]:
    """The least work that gives the same root: SHA-256 over the same canonical bytes."""
    engine = create_engine(normalise_url(url))
    timestamp = SQLITE_TS if engine.dialect.name == "sqlite" else POSTGRES_TS
    query = text(
        f"SELECT {COLUMNS} FROM consent_events ORDER BY seq".format(
            occurred=timestamp.format("occurred_at"), recorded=timestamp.format("recorded_at")
        )
    )
    dumps, sort_keys, sha256 = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.sha256
    stack: list[bytes] = []
    count = 0
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=5000).execute(query)
        for row in result:
            (seq, prev_hash, subject_id, purpose, action, confirm, notice, source, source_ref,
             jurisdiction, method, locale, occurred_at, recorded_at, evidence, _) = row  # fmt: skip
            canonical = dumps(
                {
                    "seq": seq,
                    "prev_hash": prev_hash,
                    "subject_id": subject_id,
                    "purpose": purpose,
                    "action": action,
                    "confirmation_required": bool(confirm),
                    "notice_sha256": notice,
                    "source": source,
                    "source_ref": source_ref,
                    "jurisdiction": jurisdiction,
                    "method": method,
                    "locale": locale,
                    "occurred_at": occurred_at,
                    "recorded_at": recorded_at,
                    "evidence_sha256": evidence,
                },
                option=sort_keys,
            )
            node = sha256(b"\x00" + canonical).digest()
            count += 1
            merges = count
            while not merges & 1:
                node = sha256(b"\x01" + stack.pop() + node).digest()
                merges >>= 1
            stack.append(node)
    engine.dispose()
    root = stack.pop() if stack else sha256(b"").digest()
    while stack:
        root = sha256(b"\x01" + stack.pop() + root).digest()
    return {"size": count, "root": root.hex()}


CHILDREN: dict[str, Callable[[str], dict[str, Any]]] = {
    "tree-root": child_tree_root,
    "bare-root": child_bare_root,
}


def run_child(name: str, url: str) -> tuple[ProcessRun, dict[str, Any]]:
    run = run_measured([sys.executable, "-m", "bench.proofs", name, url], timeout_s=TIMEOUT_S)
    if run.returncode != 0:
        raise RuntimeError(f"{name} failed: {run.stdout} {run.stderr[-2000:]}")
    return run, json.loads(run.stdout.strip().splitlines()[-1])


# --- in-process measurements ------------------------------------------------------------


def milliseconds(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1e3, 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 3),
        "max": round(ordered[-1] * 1e3, 3),
        "samples": len(ordered),
    }


def measure_proofs(database: Database, size: int, root: bytes) -> dict[str, Any]:
    rng = random.Random(SEED)
    inclusion: list[float] = []
    for index in (rng.randrange(size) for _ in range(PROOFS)):
        started = time.perf_counter()
        with database.read() as session:
            proof = tree.inclusion_proof(session.connection(), index, size)
        inclusion.append(time.perf_counter() - started)
        with database.read() as session:
            (leaf,) = tree.fetch_leaf_hashes(session.connection(), index, index + 1)
        merkle.verify_inclusion(leaf, index, size, proof, root)
    consistency: list[float] = []
    for old in (rng.randrange(1, size) for _ in range(CONSISTENCY_PROOFS)):
        started = time.perf_counter()
        with database.read() as session:
            proof = tree.consistency_proof(session.connection(), old, size)
        consistency.append(time.perf_counter() - started)
        with database.read() as session:
            old_root = tree.root(session.connection(), old)
        merkle.verify_consistency(old, size, proof, old_root, root)
    return {"inclusion_ms": milliseconds(inclusion), "consistency_ms": milliseconds(consistency)}


def measure_route(settings: Settings, database: Database, size: int) -> dict[str, float]:
    from starlette.testclient import TestClient

    from zeroparty.app import create_app

    rng = random.Random(SEED + 1)
    samples: list[float] = []
    with TestClient(create_app(settings, database)) as client:
        for index in (rng.randrange(size) for _ in range(ROUTE_PROOFS)):
            started = time.perf_counter()
            response = client.get("/ledger/proof/inclusion", params={"index": index, "size": size})
            samples.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"inclusion route answered {response.status_code}")
    return milliseconds(samples)


def bare_receipt_check(receipt: dict[str, Any], public_key: Any) -> None:
    """The same cryptographic work as ``verify_receipt``, nothing else: both Ed25519
    signatures, each entry's hash, and each audit path folded to the checkpoint root."""
    proof = receipt["proof"]
    note = proof["checkpoint"]
    body, _, signature_line = note.rstrip("\n").rpartition("\n\n")
    signature = base64.b64decode(signature_line.rsplit(" ", 1)[1])[4:]
    public_key.verify(signature, (body + "\n").encode())
    size, root = int(body.split("\n")[1]), base64.b64decode(body.split("\n")[2])
    unsigned = {key: value for key, value in receipt.items() if key != "signature"}
    public_key.verify(
        base64.b64decode(receipt["signature"]["ed25519"]),
        orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS),
    )
    for record in proof["records"]:
        entry = dict(record["entry"])
        stored = entry.pop("hash")
        canonical = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        if hashlib.sha256(canonical).hexdigest() != stored:
            raise ValueError("entry hash")
        # RFC 9162 §2.1.3.2
        index, last = entry["seq"] - 1, size - 1
        value = hashlib.sha256(b"\x00" + canonical).digest()
        for node in (base64.b64decode(n) for n in record["inclusion_proof"]):
            if index & 1 or index == last:
                value = hashlib.sha256(b"\x01" + node + value).digest()
                while index and not index & 1:
                    index, last = index >> 1, last >> 1
            else:
                value = hashlib.sha256(b"\x01" + value + node).digest()
            index, last = index >> 1, last >> 1
        if value != root:
            raise ValueError("inclusion proof")


def measure_receipts(
    database: Database, settings: Settings, signer: CheckpointSigner, workdir: Path
) -> dict[str, Any]:
    with database.read() as session:
        subject_id = find_subject_id(session, email_of(RECEIPT_LEAD))
    if subject_id is None:
        raise RuntimeError("the synthetic ledger has no such lead")
    started = time.perf_counter()
    receipt = receipts.build_receipt(database, settings, signer, subject_id)
    build_s = time.perf_counter() - started
    keys = [signer.verifier_key]
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(RECEIPT_RUNS):
        started = time.perf_counter()
        receipts.verify_receipt(receipt, keys)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        bare_receipt_check(receipt, signer.verifier_key.public_key)
        bare.append(time.perf_counter() - started)
    path = workdir / "receipt.json"
    path.write_bytes(orjson.dumps(receipt, option=orjson.OPT_INDENT_2))
    command = [*zeroparty_command(), "receipt", "verify", str(path), "--key", keys[0].encode()]
    process = run_measured(command, env=dict(os.environ), timeout_s=120)
    if process.returncode != 0:
        raise RuntimeError(f"receipt verify failed: {process.stdout} {process.stderr}")
    return {
        "purposes": len(receipt["proof"]["records"]),
        "bytes": path.stat().st_size,
        "build_ms": round(build_s * 1e3, 1),
        "verify_ms": milliseconds(ours),
        "bare_verify_ms": milliseconds(bare),
        "cli_seconds": round(process.seconds, 3),
        "cli_peak_mb": round(process.peak_mb, 1),
    }


def measure_audit(database: Database, settings: Settings, signer: CheckpointSigner) -> float:
    keys = transparency.verifier_keys(settings, signer)
    started = time.perf_counter()
    with database.connect() as connection:
        problem = transparency.verify_checkpoints(connection, keys, settings.ledger_origin)
    if problem is not None:
        raise RuntimeError(f"checkpoint audit failed: {problem}")
    return time.perf_counter() - started


# --- the scenario -----------------------------------------------------------------------


def make_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def run(quick: bool) -> dict[str, Any]:
    """Measure everything on a copy of the cached synthetic ledger; returns the figures."""
    entries = QUICK_ENTRIES if quick else FULL_ENTRIES
    print(f"proofs: SQLite, {entries:,} entries", flush=True)
    ledger = cached_sqlite(entries)
    workdir = Path(tempfile.mkdtemp(prefix="zeroparty-bench-proofs-"))
    try:
        path = workdir / "ledger.db"
        shutil.copyfile(make_path(ledger.url), path)
        url = sqlite_url(path)
        database = Database.from_url(url)
        try:
            with database.write() as session:
                session.execute(delete(MerkleNode))  # derived data: built from scratch below
            run_child("bare-root", url)  # warm the page cache for both sides
            ours, ours_out = run_child("tree-root", url)
            bare, bare_out = run_child("bare-root", url)
            if (ours_out["root"], ours_out["size"]) != (bare_out["root"], bare_out["size"]):
                raise RuntimeError(f"roots differ: {ours_out} vs {bare_out}")
            print(f"  tree root {ours.seconds:.2f} s {ours.peak_mb:.0f} MB; "
                  f"bare {bare.seconds:.2f} s {bare.peak_mb:.0f} MB", flush=True)  # fmt: skip
            with database.read() as session:
                nodes = len(session.execute(select(MerkleNode.height)).all())
            root = bytes.fromhex(ours_out["root"])
            proofs = measure_proofs(database, entries, root)
            print(f"  inclusion proof {proofs['inclusion_ms']}", flush=True)
            settings = Settings(
                database_url=url,
                base_url="http://bench.example",
                checkpoint_key_file=workdir / "checkpoint.key",
            )
            signer = transparency.load_signer(settings)
            route = measure_route(settings, database, entries)
            receipt = measure_receipts(database, settings, signer, workdir)
            print(f"  receipt verify {receipt['verify_ms']}", flush=True)
            audit_s = measure_audit(database, settings, signer)
        finally:
            database.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "entries": entries,
        "backend": "SQLite",
        "tree_root": {
            "seconds": round(ours.seconds, 2),
            "peak_mb": round(ours.peak_mb, 1),
            "tiles": ours_out["tiles"],
            "stored_nodes": nodes,
            "root": ours_out["root"],
        },
        "bare_root": {"seconds": round(bare.seconds, 2), "peak_mb": round(bare.peak_mb, 1)},
        "inclusion_proof_ms": proofs["inclusion_ms"],
        "consistency_proof_ms": proofs["consistency_ms"],
        "inclusion_route_ms": route,
        "receipt": receipt,
        "checkpoint_audit_seconds": round(audit_s, 2),
        "ledger_generated_seconds": round(ledger.seconds, 1),
    }


def scenario(options: Options) -> ScenarioResult:
    """The figures as a :class:`ScenarioResult`, for ``bench.run_all``."""
    figures = run(options.quick)
    n = f"{figures['entries']:,}"
    ours, bare = figures["tree_root"], figures["bare_root"]
    inclusion, receipt = figures["inclusion_proof_ms"], figures["receipt"]
    result = ScenarioResult(
        title="Proofs",
        command="python -m bench.proofs" + (" --quick" if options.quick else ""),
        what=(__doc__ or "").split("\n\n", 1)[1].split("\n\nRun alone")[0],
    )
    result.rows += [
        Row(f"SQLite: tree root over {n} entries from scratch, wall time",
            f"{ours['seconds']:.2f} s", f"{bare['seconds']:.2f} s",
            f"{ours['seconds'] / bare['seconds']:.1f}x the bare time", "—", None),
        Row(f"SQLite: tree root over {n} entries, peak RSS", f"{ours['peak_mb']:.0f} MB",
            f"{bare['peak_mb']:.0f} MB", f"{ours['peak_mb'] / bare['peak_mb']:.1f}x", "—", None),
        Row(f"SQLite: inclusion proof at {n}, p50 / p99",
            f"{inclusion['p50']:.2f} / {inclusion['p99']:.2f} ms", "—", "—",
            f"p50 < {TARGET_PROOF_MS:g} ms", inclusion["p50"] < TARGET_PROOF_MS),
        Row(f"SQLite: consistency proof to {n}, p50 / p99",
            f"{figures['consistency_proof_ms']['p50']:.2f} / "
            f"{figures['consistency_proof_ms']['p99']:.2f} ms", "—", "—", "—", None),
        Row("SQLite: GET /ledger/proof/inclusion (TestClient), p50 / p99",
            f"{figures['inclusion_route_ms']['p50']:.2f} / "
            f"{figures['inclusion_route_ms']['p99']:.2f} ms", "—", "—", "—", None),
        Row(f"receipt verification ({receipt['purposes']} purposes), p50",
            f"{receipt['verify_ms']['p50']:.3f} ms", f"{receipt['bare_verify_ms']['p50']:.3f} ms",
            f"{receipt['verify_ms']['p50'] / receipt['bare_verify_ms']['p50']:.1f}x", "—", None),
        Row("`zeroparty receipt verify` process, wall time", f"{receipt['cli_seconds']:.2f} s",
            "—", "—", "—", None),
        Row(f"SQLite: checkpoint audit (roots recomputed) at {n}",
            f"{figures['checkpoint_audit_seconds']:.2f} s", "—", "—", "—", None),
    ]  # fmt: skip
    result.notes.append(
        f"{ours['tiles']:,} tiles, {ours['stored_nodes']:,} stored subtree hashes; the "
        "root agrees with the bare computation."
    )
    return result


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in CHILDREN:
        print(json.dumps(CHILDREN[sys.argv[1]](sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ENTRIES:,} entries")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(run(args.quick), indent=2))
    else:
        print(scenario(parse_options(__doc__ or "", ["--quick"] if args.quick else [])).markdown())


if __name__ == "__main__":
    main()
