"""The ledger's Merkle tree as stored in the database (``consent_ledger.proofs.tree``).

The pure tree code is tested in ``test_merkle.py``; here the leaves come from real
``consent_events`` rows, the tiles from ``merkle_nodes``, and every answer is checked
against a reference computed from the entries ``ledger.append`` returned (so the stored
form, its read-back in :mod:`consent_ledger.stored`, and the tiling are checked at once).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.entries import LedgerEntry
from consent_ledger.models import MerkleNode
from consent_ledger.proofs import merkle, tree
from consent_ledger.subjects import get_or_create_subject
from consent_ledger.verify import verify_ledger
from tests.conftest import DatabaseFactory
from tests.factories import notice_hash
from zeroparty.db import Database, utcnow

_nodes = cast(Table, MerkleNode.__table__)

GROW_BATCH = 500


def grow(database: Database, count: int, *, batch: int = GROW_BATCH) -> list[LedgerEntry]:
    """Append ``count`` entries through :func:`ledger.append`, ``batch`` per transaction.

    Two leads alternate grants and withdrawals of ``profiling``, so the chain, the
    projection and ``ledger verify`` stay as the real services leave them.
    """
    notice = notice_hash(database, "profiling")
    with database.write() as session:
        subjects = [get_or_create_subject(session, f"tree-{n}@example.com").id for n in range(2)]
    entries: list[LedgerEntry] = []
    while len(entries) < count:
        with database.write() as session:
            for _ in range(min(batch, count - len(entries))):
                n = len(entries)
                granted = n % 3 != 2
                draft = ledger.EntryDraft(
                    subject_id=subjects[n % 2],
                    purpose="profiling",
                    action=(ConsentAction.GRANTED if granted else ConsentAction.WITHDRAWN).value,
                    source=ConsentSource.API.value,
                    method=ConsentMethod.CHECKBOX.value,
                    occurred_at=utcnow(),
                    notice_sha256=notice if granted else None,
                    source_ref=f"tree-{n}",
                    evidence={"user_agent": "pytest"} if n % 5 == 0 else {},
                )
                entries.append(ledger.append(session, draft))
    return entries


def reference_leaves(entries: Sequence[LedgerEntry]) -> list[bytes]:
    """Leaf hashes from the entries as appended, not as read back."""
    return [merkle.leaf_hash(entry.canonical()) for entry in entries]


def reference_root(leaves: Sequence[bytes], size: int) -> bytes:
    return merkle.root_from_leaf_hashes(leaves[:size])[1]


def prefix_roots(leaves: Sequence[bytes]) -> list[bytes]:
    """``[root of the first 0 leaves, of the first 1, …, of all]``."""
    return [reference_root(leaves, size) for size in range(len(leaves) + 1)]


def stored_nodes(connection: Connection) -> dict[tuple[int, int], bytes]:
    rows = connection.execute(select(_nodes.c.height, _nodes.c.index, _nodes.c.hash))
    return {(int(h), int(i)): bytes.fromhex(v) for h, i, v in rows}


def expected_nodes(leaves: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Every aligned perfect subtree of at least tile height over ``leaves``."""
    nodes: dict[tuple[int, int], bytes] = {}
    height, level = tree.TILE_HEIGHT, merkle.aligned_subtree_hashes(leaves, tree.TILE_HEIGHT)
    while level:
        nodes.update(((height, index), value) for index, value in enumerate(level))
        height, level = height + 1, merkle.aligned_subtree_hashes(level, 1)
    return nodes


def extend(database: Database, up_to: int | None = None) -> int:
    with database.write() as session:
        return tree.extend_tree(session.connection(), up_to)


# --- roots ------------------------------------------------------------------------------


def test_empty_ledger_has_the_empty_root(database: Database) -> None:
    with database.write() as session:
        connection = session.connection()
        assert tree.ledger_size(connection) == 0
        assert tree.extend_tree(connection) == 0
        assert tree.root(connection, 0) == merkle.EMPTY_ROOT
        assert stored_nodes(connection) == {}


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 512, 513, 1000])
def test_root_equals_the_reference_around_tile_boundaries(database: Database, size: int) -> None:
    leaves = reference_leaves(grow(database, size))
    with database.read() as session:
        before = tree.root(session.connection(), size)  # from leaves alone: no tiles yet
    extend(database)
    with database.read() as session:
        connection = session.connection()
        assert tree.ledger_size(connection) == size
        assert stored_nodes(connection) == expected_nodes(leaves)
        for prefix in sorted({1, size // 2, size - 1, size} - {0}):
            assert tree.root(connection, prefix) == reference_root(leaves, prefix), prefix
    assert before == reference_root(leaves, size)


def test_leaf_hashes_read_back_equal_the_appended_entries(database: Database) -> None:
    entries = grow(database, 40)
    with database.read() as session:
        read_back = tree.fetch_leaf_hashes(session.connection(), 0, 40)
        middle = tree.fetch_leaf_hashes(session.connection(), 17, 23)
    assert read_back == reference_leaves(entries)
    assert middle == read_back[17:23]


# --- extend_tree ------------------------------------------------------------------------


def test_extend_tree_is_idempotent(database: Database) -> None:
    leaves = reference_leaves(grow(database, 700))
    assert extend(database) == 2
    with database.read() as session:
        first = stored_nodes(session.connection())
    assert extend(database) == 0
    assert extend(database) == 0
    with database.read() as session:
        assert stored_nodes(session.connection()) == first == expected_nodes(leaves)


def test_extend_tree_is_incremental(database: Database) -> None:
    entries = grow(database, 200)
    assert extend(database) == 0  # no complete tile yet
    entries += grow(database, 100)
    assert extend(database) == 1
    entries += grow(database, 400)  # 700: tile 1 complete, tile 2 not
    assert extend(database) == 1
    entries += grow(database, 324)  # 1024: tiles 2 and 3, and the subtrees they complete
    assert extend(database) == 2
    leaves = reference_leaves(entries)
    with database.read() as session:
        nodes = stored_nodes(session.connection())
    assert nodes == expected_nodes(leaves)
    assert set(nodes) == {(8, 0), (8, 1), (8, 2), (8, 3), (9, 0), (9, 1), (10, 0)}
    assert nodes[10, 0] == reference_root(leaves, 1024)


def test_extend_tree_up_to_a_size_stores_only_that_far(database: Database) -> None:
    leaves = reference_leaves(grow(database, 800))
    assert extend(database, up_to=511) == 1
    assert extend(database, up_to=512) == 1
    with database.read() as session:
        assert set(stored_nodes(session.connection())) == {(8, 0), (8, 1), (9, 0)}
    assert extend(database) == 1
    with database.read() as session:
        assert stored_nodes(session.connection()) == expected_nodes(leaves)


def test_extend_tree_beyond_the_ledger_is_refused(database: Database) -> None:
    grow(database, 300)
    with pytest.raises(merkle.ProofError, match="no entries"), database.write() as session:
        tree.extend_tree(session.connection(), up_to=600)
    with database.read() as session:
        assert stored_nodes(session.connection()) == {}


def test_extend_tree_reports_a_missing_stored_subtree(database: Database) -> None:
    """A hole in ``merkle_nodes`` is reported, never papered over with a wrong parent;
    emptying the table (it is derived data) and extending again rebuilds it."""
    leaves = reference_leaves(grow(database, 1024))
    assert extend(database, up_to=768) == 3  # (8,0) (8,1) (9,0) (8,2)
    with database.write() as session:
        session.execute(_nodes.delete().where(_nodes.c.height == 9))
    with pytest.raises(merkle.ProofError, match="missing"), database.write() as session:
        tree.extend_tree(session.connection())  # tile 3 completes (10,0), which needs (9,0)
    with database.write() as session:
        session.execute(_nodes.delete())
    assert extend(database) == 4
    with database.read() as session:
        assert stored_nodes(session.connection()) == expected_nodes(leaves)


# --- proofs -----------------------------------------------------------------------------


def _proof_pairs(size: int, rng: random.Random, count: int) -> list[tuple[int, int]]:
    """(index, tree size) pairs: the edges of tiles and random ones."""
    sizes = {1, 2, 255, 256, 257, 511, 512, 513, size - 1, size}
    sizes |= {rng.randint(1, size) for _ in range(count)}
    pairs = set()
    for tree_size in (s for s in sizes if 1 <= s <= size):
        for index in {0, tree_size - 1, tree_size // 2, 255, 256, rng.randrange(tree_size)}:
            if 0 <= index < tree_size:
                pairs.add((index, tree_size))
    return sorted(pairs)


@pytest.mark.parametrize("tiles", ["none", "some", "all"])
def test_inclusion_proofs_from_the_database_verify(database: Database, tiles: str) -> None:
    entries = grow(database, 1000)
    leaves = reference_leaves(entries)
    if tiles != "none":
        extend(database, up_to=600 if tiles == "some" else None)
    pairs = _proof_pairs(1000, random.Random(6962), 8)
    with database.read() as session:
        connection = session.connection()
        for index, size in pairs:
            proof = tree.inclusion_proof(connection, index, size)
            root = reference_root(leaves, size)
            merkle.verify_inclusion(leaves[index], index, size, proof, root)
            reference = merkle.inclusion_proof(merkle.ListLeafSource(leaves), index, size)
            assert proof == reference, (index, size)


@pytest.mark.parametrize("tiles", ["none", "all"])
def test_consistency_proofs_from_the_database_verify(database: Database, tiles: str) -> None:
    leaves = reference_leaves(grow(database, 1000))
    if tiles == "all":
        extend(database)
    rng = random.Random(9162)
    edges = [1, 2, 255, 256, 257, 511, 512, 513, 768, 999, 1000]
    pairs = {(old, new) for old in edges for new in edges if old <= new}
    pairs |= {tuple(sorted((rng.randint(1, 1000), rng.randint(1, 1000)))) for _ in range(15)}
    with database.read() as session:
        connection = session.connection()
        for old, new in sorted(pairs):
            proof = tree.consistency_proof(connection, old, new)
            merkle.verify_consistency(
                old, new, proof, reference_root(leaves, old), reference_root(leaves, new)
            )
            reference = merkle.consistency_proof(merkle.ListLeafSource(leaves), old, new)
            assert proof == reference, (old, new)


def test_a_proof_does_not_verify_against_another_leaf_or_root(database: Database) -> None:
    leaves = reference_leaves(grow(database, 300))
    extend(database)
    with database.read() as session:
        proof = tree.inclusion_proof(session.connection(), 10, 300)
    root = reference_root(leaves, 300)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(leaves[11], 10, 300, proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(leaves[10], 10, 300, proof, reference_root(leaves, 299))


@pytest.mark.parametrize("stored", [False, True])
@pytest.mark.parametrize(
    "ask",
    [
        pytest.param(lambda c, n: tree.root(c, n + 1), id="root"),
        pytest.param(lambda c, n: tree.root(c, n + 300), id="root-a-tile-beyond"),
        pytest.param(lambda c, n: tree.inclusion_proof(c, 0, n + 1), id="inclusion-size"),
        pytest.param(lambda c, n: tree.inclusion_proof(c, n, n + 1), id="inclusion-index"),
        pytest.param(lambda c, n: tree.consistency_proof(c, 1, n + 1), id="consistency"),
        pytest.param(lambda c, n: tree.consistency_proof(c, n, n + 257), id="consistency-far"),
    ],
)
def test_proofs_beyond_the_ledger_are_refused(database: Database, stored: bool, ask: Any) -> None:
    grow(database, 300)
    if stored:
        extend(database)
    with database.read() as session, pytest.raises(merkle.ProofError, match="no entries"):
        ask(session.connection(), 300)


@pytest.mark.parametrize(
    "ask",
    [
        pytest.param(lambda c: tree.inclusion_proof(c, 5, 5), id="index-equals-size"),
        pytest.param(lambda c: tree.inclusion_proof(c, -1, 5), id="negative-index"),
        pytest.param(lambda c: tree.consistency_proof(c, 6, 5), id="old-after-new"),
        pytest.param(lambda c: tree.root(c, -1), id="negative-size"),
    ],
)
def test_impossible_proofs_are_refused(database: Database, ask: Any) -> None:
    grow(database, 10)
    with database.read() as session, pytest.raises(ValueError, match=r"not in|outside"):
        ask(session.connection())


def test_trivial_consistency_proofs_are_empty(database: Database) -> None:
    grow(database, 5)
    with database.read() as session:
        assert tree.consistency_proof(session.connection(), 0, 5) == []
        assert tree.consistency_proof(session.connection(), 5, 5) == []


# --- property: random ledgers -----------------------------------------------------------


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(
    # Small trees, and trees at the first tile boundary (256 leaves): the large ones cost
    # a few seconds each, every proof reading up to a tile and a half of leaves.
    size=st.integers(min_value=1, max_value=40) | st.sampled_from([255, 256, 257, 300]),
    batch=st.sampled_from([1, 7, 64, 256]),
    tiles_at=st.floats(min_value=0.0, max_value=1.0),
    data=st.data(),
)
def test_every_proof_of_a_random_ledger_verifies(
    database_factory: DatabaseFactory, size: int, batch: int, tiles_at: float, data: st.DataObject
) -> None:
    # Append-only tables cannot be emptied between examples: a fresh database for each.
    url = database_factory.new_url()
    database = Database.from_url(url)
    try:
        leaves = reference_leaves(grow(database, size, batch=batch))
        roots = prefix_roots(leaves)
        extend(database, up_to=int(size * tiles_at))
        pairs = data.draw(
            st.lists(
                st.integers(1, size).flatmap(
                    lambda n: st.tuples(st.integers(0, n - 1), st.just(n))
                ),
                max_size=20,
            ),
            label="inclusion (index, size)",
        )
        olds = data.draw(
            st.lists(
                st.integers(1, size).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
                max_size=20,
            ),
            label="consistency (old, new)",
        )
        with database.read() as session:
            connection = session.connection()
            # Every leaf at the full size, every old size to the full size, then random pairs.
            for index, tree_size in [(i, size) for i in range(size)] + pairs:
                proof = tree.inclusion_proof(connection, index, tree_size)
                merkle.verify_inclusion(leaves[index], index, tree_size, proof, roots[tree_size])
            for old, new in [(m, size) for m in range(size + 1)] + olds:
                proof = tree.consistency_proof(connection, old, new)
                merkle.verify_consistency(old, new, proof, roots[old], roots[new])
            assert tree.root(connection, size) == roots[size]
            assert verify_ledger(connection).ok
    finally:
        database.dispose()
        database_factory.drop(url)


# --- the tree recomputed by `ledger verify`'s chain walk ---------------------------------


@pytest.mark.parametrize("size", [0, 1, 256, 700])
def test_chain_walk_recomputes_the_same_tree_as_check_tree(database: Database, size: int) -> None:
    leaves = reference_leaves(grow(database, size)) if size else []
    extend(database)
    sizes = {0, 1, size // 2, size, size + 5}
    with database.read() as session:
        connection = session.connection()
        report = verify_ledger(connection, tree_sizes=sizes)
        separate = tree.check_tree(connection, sizes)
    assert report.ok
    assert report.tree == separate
    assert report.tree is not None
    assert report.tree.problem is None
    assert report.tree.entries == size
    for prefix in sizes:
        if prefix <= size:
            assert report.tree.roots[prefix] == reference_root(leaves, prefix), prefix
        else:
            assert prefix not in report.tree.roots


def test_chain_walk_finds_a_stored_subtree_that_does_not_match(database: Database) -> None:
    grow(database, 600)
    extend(database)
    with database.write() as session:
        connection = session.connection()
        connection.execute(
            _nodes.update()
            .where(_nodes.c.height == tree.TILE_HEIGHT, _nodes.c.index == 1)
            .values(hash="00" * 32)
        )
    with database.read() as session:
        report = verify_ledger(session.connection(), tree_sizes={600})
    assert report.ok  # the chain itself is intact; the stored tree is not
    assert report.tree is not None
    assert report.tree.problem is not None
    assert "height 8, index 1" in report.tree.problem
