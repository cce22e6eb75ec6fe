"""The ledger as an RFC 6962 Merkle tree, stored as tiles.

Leaf ``i`` is the canonical form of entry ``seq = i + 1`` (the bytes its chain hash is
taken over), so a receipt's entry is at once chain-checked and tree-checked. Every
complete tile of :data:`TILE` leaves gets its hash stored in ``merkle_nodes`` together
with each larger aligned subtree it completes
(:func:`consent_ledger.proofs.merkle.completed_subtrees`);
:func:`extend_tree` adds what is missing, and proofs and roots then cost ``O(log n)``
look-ups plus at most two tiles' worth of leaves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from consent_ledger import ledger_scan
from consent_ledger.entries import ENTRY_FIELDS, canonical_bytes
from consent_ledger.models import ConsentEvent, LedgerHead, MerkleNode
from consent_ledger.proofs import merkle
from consent_ledger.stored import canonical_of_row, entry_select

TILE_HEIGHT = 8
TILE = 1 << TILE_HEIGHT

_ev = cast(Table, ConsentEvent.__table__)
_nodes = cast(Table, MerkleNode.__table__)
_head = cast(Table, LedgerHead.__table__)


def fetch_leaf_hashes(connection: Connection, start: int, end: int) -> list[bytes]:
    """Leaf hashes of leaves ``[start, end)`` (entries ``start + 1`` … ``end``)."""
    stmt = entry_select().where(_ev.c.seq > start, _ev.c.seq <= end).order_by(_ev.c.seq)
    hashes = [merkle.leaf_hash(canonical_of_row(row)) for row in connection.execute(stmt)]
    if len(hashes) != end - start:
        raise merkle.ProofError(f"the ledger has no entries {start + 1}..{end}")
    return hashes


def _fetch_node(connection: Connection, height: int, index: int) -> bytes | None:
    stmt = select(_nodes.c.hash).where(_nodes.c.height == height, _nodes.c.index == index)
    value = connection.execute(stmt).scalar_one_or_none()
    return bytes.fromhex(value) if value is not None else None


def leaf_source(connection: Connection) -> merkle.TiledLeafSource:
    return merkle.TiledLeafSource(
        TILE_HEIGHT,
        lambda start, end: fetch_leaf_hashes(connection, start, end),
        lambda height, index: _fetch_node(connection, height, index),
    )


def ledger_size(connection: Connection) -> int:
    return int(connection.execute(select(_head.c.seq)).scalar_one())


def extend_tree(connection: Connection, up_to: int | None = None) -> int:
    """Store the hashes of every complete tile (and the subtrees it completes) up to
    ``up_to`` entries (default: the whole ledger); returns how many tiles were added.

    Idempotent and safe to run from several processes at once: nodes are a function of
    the append-only ledger, so a concurrent writer stores the same values and a
    conflicting insert is skipped.
    """
    size = ledger_size(connection) if up_to is None else up_to
    last = connection.execute(
        select(func.max(_nodes.c.index)).where(_nodes.c.height == TILE_HEIGHT)
    ).scalar_one_or_none()
    tile = 0 if last is None else int(last) + 1
    added = 0
    pending: dict[tuple[int, int], bytes] = {}

    def stored(height: int, index: int) -> bytes:
        value = pending.get((height, index)) or _fetch_node(connection, height, index)
        if value is None:
            raise merkle.ProofError(f"merkle node ({height}, {index}) missing: rebuild the tree")
        return value

    while (tile + 1) * TILE <= size:
        leaves = fetch_leaf_hashes(connection, tile * TILE, (tile + 1) * TILE)
        _, tile_hash = merkle.root_from_leaf_hashes(leaves)
        for height, index, value in merkle.completed_subtrees(TILE_HEIGHT, tile, tile_hash, stored):
            pending[(height, index)] = value
        tile += 1
        added += 1
        if len(pending) >= 512:
            _store(connection, pending)
            pending.clear()
    _store(connection, pending)
    return added


def _store(connection: Connection, nodes: dict[tuple[int, int], bytes]) -> None:
    if not nodes:
        return
    rows = [{"height": h, "index": i, "hash": v.hex()} for (h, i), v in nodes.items()]
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(postgresql.insert(_nodes).on_conflict_do_nothing(), rows)
    elif dialect == "sqlite":
        connection.execute(sqlite.insert(_nodes).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        connection.execute(insert(_nodes), rows)


def _require_entries(connection: Connection, size: int) -> None:
    """Refuse a tree larger than the ledger. Reading the missing leaves would catch
    most such requests, but not all: the audit path of leaf ``n`` in a tree of ``n + 1``
    leaves is made of leaves ``0 .. n - 1`` only, so a proof for an entry that does not
    exist would otherwise be handed out."""
    current = ledger_size(connection)
    if size > current:
        raise merkle.ProofError(f"the ledger has no entries {current + 1}..{size}")


def root(connection: Connection, size: int) -> bytes:
    """The Merkle root of the first ``size`` entries."""
    _require_entries(connection, size)
    return merkle.tree_root(leaf_source(connection), size)


def inclusion_proof(connection: Connection, index: int, size: int) -> list[bytes]:
    """The audit path of leaf ``index`` (entry ``index + 1``) in the tree of ``size``."""
    _require_entries(connection, size)
    return merkle.inclusion_proof(leaf_source(connection), index, size)


def consistency_proof(connection: Connection, old_size: int, new_size: int) -> list[bytes]:
    """The proof that the tree of ``old_size`` entries is a prefix of that of ``new_size``."""
    _require_entries(connection, new_size)
    return merkle.consistency_proof(leaf_source(connection), old_size, new_size)


@dataclass(frozen=True, slots=True)
class TreeCheck:
    """What :func:`check_tree` found.

    ``roots`` maps each size asked for (up to ``entries``) to the root computed from the
    entries alone; ``problem`` names the first stored subtree hash that the entries do
    not give (or that covers entries the ledger does not have), else ``None``.
    """

    entries: int
    roots: dict[int, bytes]
    problem: str | None


class TreeRebuild:
    """The tree recomputed leaf by leaf, checking stored subtree hashes on the way.

    Fed the canonical bytes of entries 1, 2, 3 … in order (:meth:`add`), it keeps
    ``O(log n)`` hashes, the roots at the sizes asked for, and the first stored subtree
    hash that the entries do not give. ``ledger verify`` feeds it from the chain walk,
    which has the canonical bytes at hand, so the tree costs no second pass.

    The stored subtree hashes are derived data: whoever can rewrite entries can leave
    the old hashes in place, and a root or proof built from them would then vouch for
    entries that are no longer there. So an audit must not use them; this recomputes
    the roots from the leaves and checks every stored hash.
    """

    __slots__ = ("_stack", "_stored", "_wanted", "count", "problem", "roots")

    def __init__(self, stored: dict[tuple[int, int], str], sizes: Iterable[int]) -> None:
        self._stored = stored
        self._wanted = {size for size in sizes if size >= 0}
        self._stack: list[bytes] = []  # roots of the perfect subtrees so far, largest first
        self.roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT} if 0 in self._wanted else {}
        self.count = 0
        self.problem: str | None = None

    @classmethod
    def load(cls, connection: Connection, sizes: Iterable[int]) -> TreeRebuild:
        """Ready to check the subtree hashes stored in ``connection``'s snapshot."""
        stored = {
            (int(height), int(index)): str(value)
            for height, index, value in connection.execute(
                select(_nodes.c.height, _nodes.c.index, _nodes.c.hash)
            )
        }
        return cls(stored, sizes)

    def add(self, canonical: bytes) -> None:
        """Leaf ``count``: the entry whose canonical form is ``canonical``."""
        value = merkle.leaf_hash(canonical)
        self.count = count = self.count + 1
        stack = self._stack
        # As in merkle.root_from_leaf_hashes: each trailing zero bit of the count
        # completes one perfect subtree, here of height `height`.
        height, merges = 0, count
        while not merges & 1:
            value = merkle.node_hash(stack.pop(), value)
            height, merges = height + 1, merges >> 1
            if height >= TILE_HEIGHT:
                self._check_stored(height, (count >> height) - 1, value)
        stack.append(value)
        if count in self._wanted:
            root = value
            for left in reversed(stack[:-1]):
                root = merkle.node_hash(left, root)
            self.roots[count] = root

    def _check_stored(self, height: int, index: int, value: bytes) -> None:
        kept = self._stored.pop((height, index), None)
        if kept is not None and kept != value.hex() and self.problem is None:
            self.problem = (
                f"stored Merkle subtree (height {height}, index {index}) does not match the entries"
            )

    def result(self) -> TreeCheck:
        """What was found, once every entry has been added."""
        problem = self.problem
        if problem is None and self._stored:
            height, index = min(self._stored)
            problem = (
                f"stored Merkle subtree (height {height}, index {index}) covers entries "
                "the ledger does not have"
            )
        return TreeCheck(self.count, dict(self.roots), problem)


def check_tree(connection: Connection, sizes: Iterable[int]) -> TreeCheck:
    """Recompute the tree from every entry, in one pass and ``O(log n)`` memory
    (see :class:`TreeRebuild`); a gap in ``seq`` ends the tree there."""
    rebuild = TreeRebuild.load(connection, sizes)
    # The driver-cursor scan `ledger verify` uses (timestamps spelled by the database):
    # the same canonical bytes as stored.canonical_of_row at half the cost per entry.
    rows = ledger_scan.chain_rows(connection)
    try:
        for row in rows:
            if row[0] != rebuild.count + 1:
                rebuild.problem = rebuild.problem or f"the ledger has no entry {rebuild.count + 1}"
                break
            fields = dict(zip(ENTRY_FIELDS, row[: len(ENTRY_FIELDS)], strict=True))
            fields["confirmation_required"] = bool(fields["confirmation_required"])
            rebuild.add(canonical_bytes(fields))
    finally:
        rows.close()
    return rebuild.result()
