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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from consent_ledger import projection
from consent_ledger.entries import GENESIS_HASH, entry_hash, evidence_commitment
from consent_ledger.models import ConsentEvent, ConsentEvidence, ConsentState, LedgerHead
from consent_ledger.state import iter_folded_pairs
from consent_ledger.stored import canonical_of_row, entry_select

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

    @property
    def ok(self) -> bool:
        return self.problem is None


def _chain_rows(connection: Connection) -> Iterator[Any]:
    stmt = (
        entry_select()
        .add_columns(_evd.c.salt, _evd.c.body)
        .select_from(_ev.outerjoin(_evd, _evd.c.seq == _ev.c.seq))
        .order_by(_ev.c.seq)
        .execution_options(stream_results=True, yield_per=STREAM_BATCH)
    )
    # Closed even when the caller stops early (a server-side cursor on PostgreSQL).
    with connection.execute(stmt) as rows:
        yield from rows


def _check_chain(
    connection: Connection, total: int, progress: ProgressCallback | None
) -> tuple[int, str, Problem | None]:
    """Walk the chain; returns (entries seen, last hash, first problem)."""
    expected_seq, running = 1, GENESIS_HASH
    count = 0
    for row in _chain_rows(connection):
        seq, prev_hash, evidence_sha256, stored = row[0], row[1], row[14], row[15]
        salt, body = row[16], row[17]
        if seq != expected_seq:
            kind = "gap" if seq > expected_seq else "order"
            what = f"entry {expected_seq} is missing" if seq > expected_seq else "out of order"
            return count, running, Problem(expected_seq, kind, f"{what} (found seq {seq})")
        if prev_hash != running:
            return (
                count,
                running,
                Problem(seq, "link", f"prev_hash does not match the hash of entry {seq - 1}"),
            )
        computed = entry_hash(canonical_of_row(row))
        if computed != stored:
            return (
                count,
                running,
                Problem(seq, "hash", "content does not match its hash (the entry was altered)"),
            )
        if body is not None and (
            evidence_sha256 is None or evidence_commitment(salt, body) != evidence_sha256
        ):
            return (
                count,
                running,
                Problem(seq, "evidence", "kept evidence does not match the entry's commitment"),
            )
        running = computed
        expected_seq += 1
        count += 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress("chain", count, total)
    return count, running, None


def _check_projection(
    connection: Connection, total: int, progress: ProgressCallback | None
) -> tuple[int, Problem | None]:
    kept_stmt = (
        select(
            _cs.c.subject_id,
            _cs.c.purpose_key,
            _cs.c.status,
            _cs.c.permitted,
            _cs.c.since,
            _cs.c.notice_sha256,
            _cs.c.last_seq,
            _cs.c.last_occurred_at,
        )
        .order_by(_cs.c.subject_id, _cs.c.purpose_key)
        .execution_options(stream_results=True, yield_per=STREAM_BATCH)
    )
    rows = 0
    with connection.engine.connect() as second, second.execute(kept_stmt) as kept_rows:
        for folded, kept in zip_longest(iter_folded_pairs(connection), kept_rows):
            rows += 1
            if folded is None:
                return rows, Problem(
                    None,
                    "projection",
                    f"consent_state has a row for subject {kept[0]} / {kept[1]} "
                    "that the ledger has no entries for",
                )
            subject_id, purpose, state = folded
            if kept is None or (kept[0], kept[1]) != (subject_id, purpose):
                return rows, Problem(
                    state.last_seq,
                    "projection",
                    f"consent_state lacks subject {subject_id} / {purpose} "
                    "(or holds a pair the ledger does not)",
                )
            if projection.StateValue(*kept[2:]) != _normalised(state):
                return rows, Problem(
                    state.last_seq,
                    "projection",
                    f"consent_state for subject {subject_id} / {purpose} disagrees with "
                    "the ledger (run `zeroparty ledger rebuild-state` after investigating)",
                )
            if progress is not None and rows % PROGRESS_EVERY == 0:
                progress("projection", rows, total)
    return rows, None


def _normalised(state: projection.StateValue) -> projection.StateValue:
    return projection.StateValue(
        state.status,
        bool(state.permitted),
        state.since,
        state.notice_sha256,
        state.last_seq,
        state.last_occurred_at,
    )


def verify_ledger(connection: Connection, progress: ProgressCallback | None = None) -> VerifyReport:
    """Check chain, head and projection; see the module docstring."""
    head = connection.execute(select(_head.c.seq, _head.c.hash)).first()
    if head is None:
        missing = Problem(None, "head", "ledger_head row is missing")
        return VerifyReport(0, 0, GENESIS_HASH, 0, missing)
    head_seq, head_hash = int(head[0]), str(head[1])
    entries, last_hash, chain_problem = _check_chain(connection, head_seq, progress)
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
        rows, projection_problem = _check_projection(connection, head_seq, progress)
        problem = projection_problem
    return VerifyReport(entries, head_seq, head_hash, rows, problem)
