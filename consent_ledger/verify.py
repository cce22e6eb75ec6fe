"""``zeroparty ledger verify``: check the whole ledger, in constant memory.

Checks, in order, stopping at the first problem:

1. the chain: ``seq`` runs 1, 2, 3 … without gaps; each ``prev_hash`` is the hash of the
   entry before; each ``hash`` is the SHA-256 of the entry's canonical form; each kept
   evidence body matches the entry's commitment;
2. the head: ``ledger_head`` names the last entry (a deleted tail shows here);
3. the projection: ``consent_state`` equals the ledger folded pair by pair.

Nothing here trusts the triggers: it recomputes everything from the stored values, so
edits made with the triggers disabled are found too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby, zip_longest
from operator import itemgetter
from typing import Any, cast

import orjson
from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from consent_ledger import ledger_scan, projection
from consent_ledger.entries import (
    GENESIS_HASH,
    entry_hash,
    evidence_commitment,
)
from consent_ledger.models import ConsentEvent, ConsentEvidence, ConsentState, LedgerHead
from consent_ledger.proofs.tree import TreeCheck, TreeRebuild

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``progress(phase, done, total)`` every :data:`PROGRESS_EVERY` entries."""

PROGRESS_EVERY = 50_000
STREAM_BATCH = 5_000

_ev, _evd, _cs, _head = (
    cast(Table, model.__table__)
    for model in (ConsentEvent, ConsentEvidence, ConsentState, LedgerHead)
)


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong: which entry (``None`` when not one entry) and what."""

    seq: int | None
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entries: int
    head_seq: int
    head_hash: str
    projection_rows: int
    problem: Problem | None
    tree: TreeCheck | None = None
    """The Merkle tree recomputed by the chain walk, when ``tree_sizes`` were asked for."""

    @property
    def ok(self) -> bool:
        return self.problem is None


def _check_chain(
    connection: Connection,
    total: int,
    progress: ProgressCallback | None,
    tree: TreeRebuild | None = None,
) -> tuple[int, str, Problem | None]:
    """Walk the chain; returns (entries seen, last hash, first problem). Each entry's
    canonical bytes also go to ``tree``, when given."""
    evidence = ledger_scan.evidence_rows(connection)
    try:
        return _walk_chain(connection, evidence, total, progress, tree)
    finally:
        evidence.close()


dumps = orjson.dumps


def _walk_chain(
    connection: Connection,
    evidence: Iterator[tuple[Any, ...]],
    total: int,
    progress: ProgressCallback | None,
    tree: TreeRebuild | None,
) -> tuple[int, str, Problem | None]:
    expected_seq, running = 1, GENESIS_HASH
    add_leaf = tree.add if tree is not None else None
    count = 0
    kept = next(evidence, None)  # evidence rows, merged in by seq
    for row in ledger_scan.chain_rows(connection):
        (seq, prev_hash, subject_id, purpose, action, confirm, notice, source, source_ref,
         jurisdiction, method, locale, occurred_at, recorded_at, evidence_sha256,
         stored) = row  # fmt: skip
        if seq != expected_seq:
            kind = "gap" if seq > expected_seq else "order"
            what = f"entry {expected_seq} is missing" if seq > expected_seq else "out of order"
            return count, running, Problem(expected_seq, kind, f"{what} (found seq {seq})")
        if prev_hash != running:
            message = f"prev_hash does not match the hash of entry {seq - 1}"
            return count, running, Problem(seq, "link", message)
        # Keys written in sorted order, so plain dumps gives the canonical bytes
        # (entries.canonical_bytes sorts; the test suite checks the two agree).
        canonical = dumps(
            {
                "action": action,
                "confirmation_required": bool(confirm),
                "evidence_sha256": evidence_sha256,
                "jurisdiction": jurisdiction,
                "locale": locale,
                "method": method,
                "notice_sha256": notice,
                "occurred_at": occurred_at,
                "prev_hash": prev_hash,
                "purpose": purpose,
                "recorded_at": recorded_at,
                "seq": seq,
                "source": source,
                "source_ref": source_ref,
                "subject_id": subject_id,
            }
        )
        computed = entry_hash(canonical)
        if computed != stored:
            message = "content does not match its hash (the entry was altered)"
            return count, running, Problem(seq, "hash", message)
        while kept is not None and kept[0] < seq:
            kept = next(evidence, None)
        if kept is not None and kept[0] == seq:
            if evidence_sha256 is None or evidence_commitment(kept[1], kept[2]) != evidence_sha256:
                message = "kept evidence does not match the entry's commitment"
                return count, running, Problem(seq, "evidence", message)
            kept = next(evidence, None)
        if add_leaf is not None:
            add_leaf(canonical)
        running = computed
        expected_seq += 1
        count += 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress("chain", count, total)
    return count, running, None


def _folded_pairs(connection: Connection) -> Iterator[tuple[str, str, projection.StateValue]]:
    """The ledger folded pair by pair, timestamps kept as comparable text (it sorts in
    time order, which is all the fold needs of them)."""
    facts = ledger_scan.fact_rows(connection)
    fact = projection.ConsentFact
    for (subject_id, purpose), group in groupby(facts, key=itemgetter(0, 1)):
        state = projection.fold([fact(r[2], r[3], r[4], r[5], r[6]) for r in group])
        assert state is not None
        yield subject_id, purpose, state


def _check_projection(
    connection: Connection, total: int, progress: ProgressCallback | None
) -> tuple[int, Problem | None]:
    # Same connection, same transaction: the states and the entries come from one
    # snapshot, so appends running meanwhile cannot make them look inconsistent.
    kept_rows = ledger_scan.state_rows(connection)
    try:
        return _compare_states(_folded_pairs(connection), kept_rows, total, progress)
    finally:
        kept_rows.close()


def _compare_states(
    folded_pairs: Iterator[tuple[str, str, projection.StateValue]],
    kept_rows: Iterator[tuple[Any, ...]],
    total: int,
    progress: ProgressCallback | None,
) -> tuple[int, Problem | None]:
    rows = 0
    for folded, kept in zip_longest(folded_pairs, kept_rows):
        rows += 1
        if folded is None:
            message = (
                f"consent_state has a row for subject {kept[0]} / {kept[1]} "
                "that the ledger has no entries for"
            )
            return rows, Problem(None, "projection", message)
        subject_id, purpose, state = folded
        if kept is None or (kept[0], kept[1]) != (subject_id, purpose):
            message = (
                f"consent_state lacks subject {subject_id} / {purpose} "
                "(or holds a pair the ledger does not)"
            )
            return rows, Problem(state.last_seq, "projection", message)
        if tuple(kept[2:]) != state:
            message = (
                f"consent_state for subject {subject_id} / {purpose} disagrees with the "
                "ledger (run `zeroparty ledger rebuild-state` after investigating)"
            )
            return rows, Problem(state.last_seq, "projection", message)
        if progress is not None and rows % PROGRESS_EVERY == 0:
            progress("projection", rows, total)
    return rows, None


def verify_ledger(
    connection: Connection,
    progress: ProgressCallback | None = None,
    *,
    projection_result: Callable[[], tuple[int, Problem | None]] | None = None,
    tree_sizes: Iterable[int] | None = None,
) -> VerifyReport:
    """Check chain, head and projection; see the module docstring.

    ``projection_result``, when given, supplies the projection check's outcome (run
    elsewhere, see :func:`verify_database`) instead of running it here. ``tree_sizes``,
    when given, has the chain walk recompute the Merkle tree too (the report's ``tree``,
    with the roots at those sizes: what checking signed checkpoints needs).
    """
    head = connection.execute(select(_head.c.seq, _head.c.hash)).first()
    if head is None:
        missing = Problem(None, "head", "ledger_head row is missing")
        return VerifyReport(0, 0, GENESIS_HASH, 0, missing)
    head_seq, head_hash = int(head[0]), str(head[1])
    tree = TreeRebuild.load(connection, tree_sizes) if tree_sizes is not None else None
    entries, last_hash, chain_problem = _check_chain(connection, head_seq, progress, tree)
    problem: Problem | None = chain_problem
    if problem is None and entries < head_seq:
        problem = Problem(
            entries + 1,
            "head",
            f"ledger_head names entry {head_seq} but the chain ends at entry {entries} "
            "(entries were deleted from the tail)",
        )
    elif problem is None and entries > head_seq:
        problem = Problem(
            head_seq + 1,
            "head",
            f"the chain runs to entry {entries} past ledger_head's entry {head_seq} "
            "(entries were appended without the ledger's lock)",
        )
    elif problem is None and last_hash != head_hash:
        problem = Problem(entries, "head", "ledger_head's hash differs from the last entry's")
    rows = 0
    if problem is None:
        if projection_result is not None:
            rows, projection_problem = projection_result()
        else:
            rows, projection_problem = _check_projection(connection, head_seq, progress)
        problem = projection_problem
    tree_check = tree.result() if tree is not None else None
    return VerifyReport(entries, head_seq, head_hash, rows, problem, tree_check)


def _snapshot(connection: Connection) -> Connection:
    """One snapshot for the whole check (PostgreSQL statements otherwise each see their
    own; SQLite's read transaction is one snapshot already)."""
    if connection.dialect.name == "postgresql":
        return connection.execution_options(isolation_level="REPEATABLE READ")
    return connection


def _projection_in_child(url: str) -> tuple[int, Problem | None]:
    from zeroparty.db import Database

    database = Database.from_url(url)
    try:
        with database.connect() as raw:
            connection = _snapshot(raw)
            head = connection.execute(select(_head.c.seq)).scalar_one_or_none() or 0
            return _check_projection(connection, int(head), None)
    finally:
        database.dispose()


def verify_database(
    url: str,
    progress: ProgressCallback | None = None,
    tree_sizes: Iterable[int] | None = None,
) -> VerifyReport:
    """Verify the ledger at ``url`` using both cores: the chain and head are checked here
    while a second process checks the projection (each on its own consistent snapshot).
    What ``zeroparty ledger verify`` runs; the result is the same as :func:`verify_ledger`.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from zeroparty.db import Database

    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        future = pool.submit(_projection_in_child, url)
        database = Database.from_url(url)
        try:
            with database.connect() as raw:
                report = verify_ledger(
                    _snapshot(raw),
                    progress,
                    projection_result=future.result,
                    tree_sizes=tree_sizes,
                )
        finally:
            database.dispose()
            future.cancel()
    return report
