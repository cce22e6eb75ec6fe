"""RFC 6962 / RFC 9162 Merkle trees: public vectors, properties, hostile input."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent_ledger.proofs.merkle import (
    EMPTY_ROOT,
    ListLeafSource,
    ProofError,
    TiledLeafSource,
    aligned_subtree_hashes,
    completed_subtrees,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "merkle"
VECTOR_FILES = sorted(VECTORS.glob("*/*/*.json"))

# RFC 6962 reference tree (certificate-transparency merkle_tree_test): these leaves and
# the roots of their first 1..8 prefixes.
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
RFC6962_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def leaves(count: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(8, "big")) for i in range(count)]


def reference_root(hashes: list[bytes]) -> bytes:
    """MTH exactly as RFC 6962 §2.1 writes it, recursively."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    split = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(reference_root(hashes[:split]), reference_root(hashes[split:]))


def flip(value: bytes, position: int, bit: int) -> bytes:
    changed = bytearray(value)
    changed[position] ^= 1 << bit
    return bytes(changed)


class CountingSource(ListLeafSource):
    """A list source that records how many leaves each proof reads."""

    def __init__(self, hashes: list[bytes]) -> None:
        super().__init__(hashes)
        self.calls = 0
        self.leaves_read = 0

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        self.calls += 1
        self.leaves_read += end - start
        return super().leaf_hashes(start, end)


def stored_subtrees(hashes: list[bytes], tile_height: int) -> dict[tuple[int, int], bytes]:
    """Every aligned subtree of at least tile height, keyed ``(height, index)``, in bulk."""
    store: dict[tuple[int, int], bytes] = {}
    height, level = tile_height, aligned_subtree_hashes(hashes, tile_height)
    while level:
        store.update(((height, index), value) for index, value in enumerate(level))
        height, level = height + 1, aligned_subtree_hashes(level, 1)
    return store


class NodeStore:
    """Stored subtree hashes, counting lookups like a database would see them."""

    def __init__(self, nodes: dict[tuple[int, int], bytes]) -> None:
        self.nodes = nodes
        self.lookups = 0

    def fetch(self, height: int, index: int) -> bytes | None:
        self.lookups += 1
        return self.nodes.get((height, index))


def tiled(
    hashes: list[bytes], tile_height: int, nodes: dict[tuple[int, int], bytes] | None = None
) -> tuple[TiledLeafSource, CountingSource, NodeStore]:
    counting = CountingSource(hashes)
    store = NodeStore(stored_subtrees(hashes, tile_height) if nodes is None else nodes)
    return TiledLeafSource(tile_height, counting.leaf_hashes, store.fetch), counting, store


# -- public vectors (transparency-dev/merkle testdata) ---------------------------------


def _decode(value: str) -> bytes:
    return base64.b64decode(value)


def _run_vector(case: dict[str, Any]) -> None:
    proof = [_decode(item) for item in case["proof"] or []]
    if "leafIdx" in case:
        verify_inclusion(
            _decode(case["leafHash"]),
            case["leafIdx"],
            case["treeSize"],
            proof,
            _decode(case["root"]),
        )
    else:
        verify_consistency(
            case["size1"], case["size2"], proof, _decode(case["root1"]), _decode(case["root2"])
        )


def test_vectors_are_present() -> None:
    assert len(VECTOR_FILES) > 100
    assert (VECTORS / "LICENSE").is_file()


@pytest.mark.parametrize(
    "path", VECTOR_FILES, ids=[str(p.relative_to(VECTORS)) for p in VECTOR_FILES]
)
def test_public_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    if case["wantErr"]:
        with pytest.raises(ProofError):
            _run_vector(case)
    else:
        _run_vector(case)


# -- hashing and roots -----------------------------------------------------------------


def test_hash_definitions() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_rfc6962_reference_roots(size: int) -> None:
    hashes = [leaf_hash(entry) for entry in RFC6962_LEAVES[:size]]
    assert root_from_leaf_hashes(hashes) == (size, bytes.fromhex(RFC6962_ROOTS[size - 1]))


def test_root_of_nothing_is_empty_root() -> None:
    assert root_from_leaf_hashes([]) == (0, EMPTY_ROOT)
    assert tree_root(ListLeafSource([]), 0) == EMPTY_ROOT


def test_root_streams_from_a_generator() -> None:
    hashes = leaves(1000)
    assert root_from_leaf_hashes(iter(hashes)) == (1000, reference_root(hashes))


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, "x" * 32, None])
def test_root_rejects_items_that_are_not_hashes(bad: object) -> None:
    with pytest.raises(ValueError, match="hash #1"):
        root_from_leaf_hashes([b"x" * 32, bad])  # type: ignore[list-item]


@given(st.integers(min_value=0, max_value=300))
def test_streaming_root_matches_the_rfc_recursion(size: int) -> None:
    hashes = leaves(size)
    assert root_from_leaf_hashes(hashes) == (size, reference_root(hashes))
    assert tree_root(ListLeafSource(hashes), size) == reference_root(hashes)


def test_aligned_subtree_hashes_cover_complete_tiles_only() -> None:
    hashes = leaves(37)
    tiles = aligned_subtree_hashes(hashes, 3)
    assert tiles == [reference_root(hashes[i : i + 8]) for i in range(0, 32, 8)]
    assert aligned_subtree_hashes(hashes, 0) == hashes
    assert aligned_subtree_hashes(hashes[:7], 3) == []
    # A perfect subtree's hash is the fold of the tiles it covers.
    assert root_from_leaf_hashes(tiles)[1] == reference_root(hashes[:32])
    with pytest.raises(ValueError, match="height"):
        aligned_subtree_hashes(hashes, -1)


# -- proof generation ------------------------------------------------------------------


def rfc6962_example_tree() -> dict[str, bytes]:
    """The 7-leaf tree of RFC 6962 §2.1.3, its nodes named as the RFC names them."""
    a, b, c, d, e, f, j = (leaf_hash(entry) for entry in RFC6962_LEAVES[:7])
    g, h, i = node_hash(a, b), node_hash(c, d), node_hash(e, f)
    nodes = {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "g": g, "h": h, "i": i, "j": j}
    nodes["k"], nodes["l"] = node_hash(g, h), node_hash(i, j)
    return nodes


@pytest.mark.parametrize(("index", "path"), [(0, "bhl"), (3, "cgl"), (4, "fjk"), (6, "ik")])
def test_rfc6962_inclusion_proof_examples(index: int, path: str) -> None:
    nodes = rfc6962_example_tree()
    source = ListLeafSource([nodes[name] for name in "abcdefj"])
    assert inclusion_proof(source, index, 7) == [nodes[name] for name in path]


@pytest.mark.parametrize(("old", "path"), [(3, "cdgl"), (4, "l"), (6, "ijk")])
def test_rfc6962_consistency_proof_examples(old: int, path: str) -> None:
    nodes = rfc6962_example_tree()
    source = ListLeafSource([nodes[name] for name in "abcdefj"])
    assert consistency_proof(source, old, 7) == [nodes[name] for name in path]


@pytest.mark.parametrize(("index", "size"), [(-1, 5), (5, 5), (0, 0), (0, 2**64)])
def test_inclusion_proof_rejects_bad_positions(index: int, size: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by case
        inclusion_proof(ListLeafSource(leaves(5)), index, size)


@pytest.mark.parametrize(("old", "new"), [(-1, 5), (6, 5), (0, 2**64)])
def test_consistency_proof_rejects_bad_sizes(old: int, new: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by case
        consistency_proof(ListLeafSource(leaves(5)), old, new)


def test_trivial_consistency_proofs_are_empty() -> None:
    source = ListLeafSource(leaves(5))
    assert consistency_proof(source, 0, 5) == []
    assert consistency_proof(source, 5, 5) == []


def test_short_source_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"returned 3 leaf hashes for \[1, 8\)"):
        inclusion_proof(ListLeafSource(leaves(4)), 0, 8)


@settings(max_examples=200)
@given(st.data())
def test_generated_inclusion_proofs_verify(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=300))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    hashes = leaves(size)
    _, root = root_from_leaf_hashes(hashes)
    proof = inclusion_proof(ListLeafSource(hashes), index, size)
    verify_inclusion(hashes[index], index, size, proof, root)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 31, 64, 65])
def test_every_leaf_of_small_trees_verifies(size: int) -> None:
    hashes = leaves(size)
    _, root = root_from_leaf_hashes(hashes)
    source = ListLeafSource(hashes)
    for index in range(size):
        verify_inclusion(hashes[index], index, size, inclusion_proof(source, index, size), root)


@settings(max_examples=200)
@given(st.data())
def test_generated_consistency_proofs_verify(data: st.DataObject) -> None:
    new = data.draw(st.integers(min_value=0, max_value=300))
    old = data.draw(st.integers(min_value=0, max_value=new))
    hashes = leaves(new)
    proof = consistency_proof(ListLeafSource(hashes), old, new)
    verify_consistency(old, new, proof, reference_root(hashes[:old]), reference_root(hashes))


@settings(max_examples=200)
@given(st.data())
def test_any_flipped_bit_breaks_an_inclusion_proof(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=300))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    hashes = leaves(size)
    _, root = root_from_leaf_hashes(hashes)
    proof = inclusion_proof(ListLeafSource(hashes), index, size)
    position = data.draw(st.integers(min_value=0, max_value=31))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    target = data.draw(st.integers(min_value=-2, max_value=len(proof) - 1))
    leaf = hashes[index]
    if target == -2:
        root = flip(root, position, bit)
    elif target == -1:
        leaf = flip(leaf, position, bit)
    else:
        proof[target] = flip(proof[target], position, bit)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, root)


@settings(max_examples=200)
@given(st.data())
def test_any_flipped_bit_breaks_a_consistency_proof(data: st.DataObject) -> None:
    new = data.draw(st.integers(min_value=2, max_value=300))
    old = data.draw(st.integers(min_value=1, max_value=new - 1))
    hashes = leaves(new)
    proof = consistency_proof(ListLeafSource(hashes), old, new)
    old_root, new_root = reference_root(hashes[:old]), reference_root(hashes)
    position = data.draw(st.integers(min_value=0, max_value=31))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    target = data.draw(st.integers(min_value=-2, max_value=len(proof) - 1))
    if target == -2:
        old_root = flip(old_root, position, bit)
    elif target == -1:
        new_root = flip(new_root, position, bit)
    else:
        proof[target] = flip(proof[target], position, bit)
    with pytest.raises(ProofError):
        verify_consistency(old, new, proof, old_root, new_root)


@settings(max_examples=100)
@given(st.data())
def test_proofs_do_not_verify_at_other_positions(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=2, max_value=300))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    other = data.draw(st.integers(min_value=0, max_value=size - 1).filter(lambda i: i != index))
    hashes = leaves(size)
    _, root = root_from_leaf_hashes(hashes)
    proof = inclusion_proof(ListLeafSource(hashes), index, size)
    with pytest.raises(ProofError):
        verify_inclusion(hashes[index], other, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(hashes[other], index, size, proof, root)


# -- hostile input ---------------------------------------------------------------------

HASH = b"\x00" * 32
hash_like = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=40),
    st.text(max_size=33),
    st.none(),
    st.integers(),
)
size_like = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=20),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
)
proof_like = st.one_of(
    st.lists(hash_like, max_size=70),
    st.lists(st.binary(min_size=32, max_size=32), max_size=70).map(tuple),
    st.none(),
    st.binary(max_size=64),
    st.text(max_size=5),
    st.integers(),
)


@settings(max_examples=500)
@given(hash_like, size_like, size_like, proof_like, hash_like)
def test_fuzzed_inclusion_raises_only_proof_error(
    leaf: Any, index: Any, size: Any, proof: Any, root: Any
) -> None:
    with contextlib.suppress(ProofError):
        verify_inclusion(leaf, index, size, proof, root)


@settings(max_examples=500)
@given(size_like, size_like, proof_like, hash_like, hash_like)
def test_fuzzed_consistency_raises_only_proof_error(
    old: Any, new: Any, proof: Any, old_root: Any, new_root: Any
) -> None:
    with contextlib.suppress(ProofError):
        verify_consistency(old, new, proof, old_root, new_root)


@pytest.mark.parametrize(
    ("leaf", "index", "size", "proof", "message"),
    [
        (HASH, 0, 0, [], "not in a tree"),
        (HASH, 1, 1, [], "not in a tree"),
        (HASH, -1, 2, [HASH], "leaf index"),
        (HASH, 0, 2**64, [HASH], "tree size"),
        (HASH, 2**200, 2**201, [HASH], "leaf index"),
        (HASH, True, 2, [HASH], "leaf index"),
        (HASH, 0, 2, None, "not a list"),
        (HASH, 0, 2, HASH, "not a list"),
        (HASH, 0, 2, [HASH] * 65, "more than any tree needs"),
        (HASH, 0, 2, [HASH, HASH], "longer than"),
        (HASH, 0, 4, [HASH], "shorter than"),
        (HASH, 0, 2, [b"short"], "proof hash #0"),
        (b"", 0, 1, [], "leaf hash"),
        (HASH, 0, 1, [], "does not lead to the root"),
    ],
)
def test_inclusion_rejects_malformed_input(
    leaf: Any, index: Any, size: Any, proof: Any, message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        verify_inclusion(leaf, index, size, proof, b"\x01" * 32)


def test_inclusion_rejects_a_long_proof_quickly() -> None:
    with pytest.raises(ProofError, match="more than any tree needs"):
        verify_inclusion(HASH, 0, 2, [HASH] * 1_000_000, HASH)


@pytest.mark.parametrize(
    ("old", "new", "proof", "old_root", "new_root", "message"),
    [
        (5, 4, [HASH], HASH, HASH, "larger than"),
        (4, 4, [HASH], HASH, HASH, "empty consistency proof"),
        (4, 4, [], HASH, b"\x01" * 32, "different roots"),
        # RFC 9162 §2.1.1: at size 0 only SHA-256("") is a root, even when both match.
        (0, 0, [], HASH, HASH, "not the root of the empty tree"),
        (0, 0, [], EMPTY_ROOT, HASH, "different roots"),
        (0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT, "empty tree needs"),
        (0, 4, [HASH], EMPTY_ROOT, HASH, "empty tree needs"),
        (0, 4, [], HASH, HASH, "not the root of the empty tree"),
        (3, 4, [], HASH, HASH, "is empty"),
        (-1, 4, [HASH], HASH, HASH, "old size"),
        (1, 2**64, [HASH], HASH, HASH, "new size"),
        (1, 2, [HASH] * 66, HASH, HASH, "more than any tree needs"),
        (1, 2, [HASH, HASH], HASH, HASH, "longer than"),
        (3, 8, [HASH], HASH, HASH, "shorter than"),
        (1, 2, [HASH], b"", HASH, "old root"),
        (1, 2, [HASH], HASH, "x" * 32, "new root"),
    ],
)
def test_consistency_rejects_malformed_input(
    old: Any, new: Any, proof: Any, old_root: Any, new_root: Any, message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        verify_consistency(old, new, proof, old_root, new_root)


def test_trivial_consistency_cases_accept() -> None:
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 9, [], EMPTY_ROOT, HASH)
    verify_consistency(9, 9, [], HASH, HASH)


# -- the edges of RFC 9162 §2.1.4: equal sizes, size 0, a shrinking tree -----------------

DIGESTS = st.binary(min_size=32, max_size=32)


@settings(max_examples=200)
@given(size=st.integers(min_value=1, max_value=300), data=st.data())
def test_equal_nonempty_sizes_need_an_empty_proof_and_equal_roots(
    size: int, data: st.DataObject
) -> None:
    """§2.1.4.1: ``SUBPROOF(m, D[m], true) = {}``: the proof is empty and proves that
    the two heads name the same tree, so it holds exactly when the roots are equal."""
    hashes = leaves(size)
    root = reference_root(hashes)
    assert consistency_proof(ListLeafSource(hashes), size, size) == []
    verify_consistency(size, size, [], root, root)
    other = data.draw(DIGESTS.filter(lambda digest: digest != root))
    for old_root, new_root in [(root, other), (other, root)]:
        with pytest.raises(ProofError, match="different roots"):
            verify_consistency(size, size, [], old_root, new_root)
    extra = data.draw(st.lists(DIGESTS, min_size=1, max_size=3))
    with pytest.raises(ProofError, match="empty consistency proof"):
        verify_consistency(size, size, extra, root, root)


@settings(max_examples=200)
@given(size=st.integers(min_value=0, max_value=300), data=st.data())
def test_from_size_zero_only_the_empty_root_is_accepted(size: int, data: st.DataObject) -> None:
    """The empty tree is a prefix of every tree, but its root is SHA-256("") (§2.1.1):
    any other old root is refused, equal to the new one or not; at ``0 -> 0`` both
    roots must be it."""
    hashes = leaves(size)
    new_root = reference_root(hashes)
    assert consistency_proof(ListLeafSource(hashes), 0, size) == []
    verify_consistency(0, size, [], EMPTY_ROOT, new_root)
    impostor = data.draw(DIGESTS.filter(lambda digest: digest != EMPTY_ROOT))
    for old_root, root in [(impostor, new_root), (impostor, impostor)]:
        with pytest.raises(ProofError, match="not the root of the empty tree"):
            verify_consistency(0, size, [], old_root, root)
    if size == 0:
        with pytest.raises(ProofError, match="different roots"):
            verify_consistency(0, 0, [], EMPTY_ROOT, impostor)
    extra = data.draw(st.lists(DIGESTS, min_size=1, max_size=3))
    with pytest.raises(ProofError, match="empty tree needs"):
        verify_consistency(0, size, extra, EMPTY_ROOT, new_root)


@settings(max_examples=200)
@given(
    new=st.integers(min_value=0, max_value=300),
    shrink=st.integers(min_value=1, max_value=300),
    proof=st.lists(DIGESTS, max_size=3),
    roots=st.tuples(DIGESTS, DIGESTS),
)
def test_a_shrinking_tree_is_never_consistent(
    new: int, shrink: int, proof: list[bytes], roots: tuple[bytes, bytes]
) -> None:
    with pytest.raises(ValueError, match="is not in"):
        consistency_proof(ListLeafSource(leaves(new)), new + shrink, new)
    with pytest.raises(ProofError, match="larger than"):
        verify_consistency(new + shrink, new, proof, *roots)


@settings(max_examples=200)
@given(data=st.data())
def test_a_proper_prefix_needs_a_proof(data: st.DataObject) -> None:
    """§2.1.4.2 step 1: for ``0 < first < second`` an empty proof fails, even with the
    right roots."""
    new = data.draw(st.integers(min_value=2, max_value=300))
    old = data.draw(st.integers(min_value=1, max_value=new - 1))
    hashes = leaves(new)
    with pytest.raises(ProofError, match="is empty"):
        verify_consistency(old, new, [], reference_root(hashes[:old]), reference_root(hashes))


def test_proof_error_is_a_value_error() -> None:
    assert issubclass(ProofError, ValueError)


# -- cached aligned subtrees -----------------------------------------------------------

BIG = 100_000
TILE_HEIGHT = 8
TILE = 1 << TILE_HEIGHT


@pytest.fixture(scope="module")
def big_leaves() -> list[bytes]:
    return leaves(BIG)


@pytest.fixture(scope="module")
def big_nodes(big_leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    return stored_subtrees(big_leaves, TILE_HEIGHT)


@pytest.mark.parametrize("index", [0, 1, 255, 256, 4097, 65535, 65536, 99_999, 77_777])
def test_tiled_inclusion_proof_reads_few_hashes(
    big_leaves: list[bytes], big_nodes: dict[tuple[int, int], bytes], index: int
) -> None:
    source, counting, store = tiled(big_leaves, TILE_HEIGHT, big_nodes)
    proof = inclusion_proof(source, index, BIG)
    assert proof == inclusion_proof(ListLeafSource(big_leaves), index, BIG)
    # The leaf's own tile and the partial last tile, each read at most once, plus one
    # lookup per stored subtree on the path.
    assert counting.calls <= 2
    assert counting.leaves_read <= 2 * TILE
    assert store.lookups <= 2 * BIG.bit_length()
    _, root = root_from_leaf_hashes(big_leaves)
    verify_inclusion(big_leaves[index], index, BIG, proof, root)


@pytest.mark.parametrize(("old", "new"), [(1, BIG), (256, BIG), (65_536, BIG), (12_345, 99_000)])
def test_tiled_consistency_proof_reads_few_hashes(
    big_leaves: list[bytes], big_nodes: dict[tuple[int, int], bytes], old: int, new: int
) -> None:
    source, counting, store = tiled(big_leaves, TILE_HEIGHT, big_nodes)
    proof = consistency_proof(source, old, new)
    assert proof == consistency_proof(ListLeafSource(big_leaves), old, new)
    assert counting.leaves_read <= 2 * TILE
    assert store.lookups <= 2 * BIG.bit_length()
    verify_consistency(
        old,
        new,
        proof,
        root_from_leaf_hashes(big_leaves[:old])[1],
        root_from_leaf_hashes(big_leaves[:new])[1],
    )


def test_tiled_root_reads_only_the_last_partial_tile(
    big_leaves: list[bytes], big_nodes: dict[tuple[int, int], bytes]
) -> None:
    source, counting, store = tiled(big_leaves, TILE_HEIGHT, big_nodes)
    assert tree_root(source, BIG) == root_from_leaf_hashes(big_leaves)[1]
    assert counting.leaves_read == BIG % TILE
    assert store.lookups == (BIG >> TILE_HEIGHT).bit_count()


def test_plain_source_reads_everything_once(big_leaves: list[bytes]) -> None:
    counting = CountingSource(big_leaves)
    inclusion_proof(counting, 4242, BIG)
    assert counting.calls == 1
    assert counting.leaves_read == BIG


@settings(max_examples=100)
@given(st.data())
def test_tiled_proofs_equal_plain_proofs(data: st.DataObject) -> None:
    tile_height = data.draw(st.integers(min_value=1, max_value=4))
    size = data.draw(st.integers(min_value=1, max_value=300))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    old = data.draw(st.integers(min_value=0, max_value=size))
    hashes = leaves(size)
    plain = ListLeafSource(hashes)
    source, _, _ = tiled(hashes, tile_height)
    assert inclusion_proof(source, index, size) == inclusion_proof(plain, index, size)
    assert consistency_proof(source, old, size) == consistency_proof(plain, old, size)
    assert tree_root(source, size) == reference_root(hashes)


@given(st.integers(min_value=0, max_value=600), st.integers(min_value=1, max_value=4))
def test_completed_subtrees_keep_the_store_equal_to_a_bulk_build(
    size: int, tile_height: int
) -> None:
    hashes = leaves(size)
    tile = 1 << tile_height
    store: dict[tuple[int, int], bytes] = {}
    # Append leaf by leaf, storing what each filled tile completes.
    for count in range(1, size + 1):
        if count % tile == 0:
            tile_hash = root_from_leaf_hashes(hashes[count - tile : count])[1]
            for height, index, value in completed_subtrees(
                tile_height, count // tile - 1, tile_hash, lambda h, i: store[h, i]
            ):
                assert (height, index) not in store  # append-only: written once
                store[height, index] = value
    assert store == stored_subtrees(hashes, tile_height)


CHAIN = [(1, 7), (2, 3), (3, 1), (4, 0)]


def test_completed_subtrees_climbs_while_a_right_child() -> None:
    hashes = leaves(16)
    nodes = stored_subtrees(hashes, 1)
    completed = completed_subtrees(1, 7, nodes[1, 7], lambda h, i: nodes[h, i])
    assert completed == [
        (1, 7, nodes[1, 7]),
        (2, 3, nodes[2, 3]),
        (3, 1, nodes[3, 1]),
        (4, 0, nodes[4, 0]),
    ]
    assert completed_subtrees(1, 6, nodes[1, 6], lambda h, i: nodes[h, i]) == [(1, 6, nodes[1, 6])]


def test_tiled_source_falls_back_to_leaves_when_nodes_are_missing() -> None:
    hashes = leaves(64)
    source, counting, store = tiled(hashes, 3, nodes={})
    assert tree_root(source, 64) == reference_root(hashes)
    assert counting.leaves_read == 64
    assert store.lookups == 1


def test_tiled_source_rejects_zero_height() -> None:
    with pytest.raises(ValueError, match="tile_height"):
        TiledLeafSource(0, ListLeafSource([]).leaf_hashes, lambda h, i: None)


class BadCacheSource(ListLeafSource):
    def subtree_hash(self, start: int, end: int) -> bytes | None:
        return b"short"


def test_bad_cached_hash_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"cached hash of \[0, 4\) is not 32 bytes"):
        tree_root(BadCacheSource(leaves(4)), 4)
    source = TiledLeafSource(1, ListLeafSource(leaves(4)).leaf_hashes, lambda h, i: b"x")
    with pytest.raises(ValueError, match="not 32 bytes"):
        tree_root(source, 4)
