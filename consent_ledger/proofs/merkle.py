"""RFC 6962 / RFC 9162 Merkle trees: roots, proofs, and their verification.

Hashing (RFC 6962 §2.1, RFC 9162 §2.1.1): ``leaf = SHA-256(0x00 || entry)``,
``node = SHA-256(0x01 || left || right)``, and the root of the empty tree is
``SHA-256("")``. The 0x00/0x01 prefixes keep a leaf from ever being read as a node
(second-preimage resistance).

Nothing here touches a database. Proofs are generated from a :class:`LeafHashSource`, an
indexed store of leaf hashes that may also hand back cached hashes of perfect aligned
subtrees. A store that keeps the hash of every aligned subtree of at least ``2**k``
leaves (one per filled *tile* of ``2**k`` leaves, plus their ancestors: see
:func:`completed_subtrees` and :class:`TiledLeafSource`) builds a proof at any size
from ``O(log n)`` stored hashes and at most two short leaf reads, never a scan.

Verifiers never raise anything but :class:`ProofError`, whatever they are handed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

HASH_SIZE = 32

# RFC 9162 §2.1: tree_size is a uint64.
MAX_TREE_SIZE = 2**64 - 1

# RFC 9162 §2.1.3.1 / §2.1.4.1: an inclusion proof has one hash per level below the
# root (at most 64 for a uint64 size); a consistency proof at most one more.
_MAX_INCLUSION_PROOF = 64
_MAX_CONSISTENCY_PROOF = 65

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof, root or tree size failed verification or was malformed."""


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 §2.1: the hash of one leaf, ``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: the hash of an interior node, ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> tuple[int, bytes]:
    """Return ``(tree size, root)`` of the tree over ``hashes``, streamed in order.

    Memory is ``O(log n)``: a stack of the roots of the perfect subtrees seen so far
    (a compact range), whose sizes are the set bits of the count. Folding that stack
    right to left gives the RFC 6962 §2.1 MTH, because MTH splits at the largest power
    of two below ``n``. An empty input gives ``(0, EMPTY_ROOT)``. The hashes may be
    leaf hashes or the hashes of equal-height aligned subtrees (tiles): the fold is the
    same. Raises ``ValueError`` for an item that is not a 32-byte hash.
    """
    sha256 = hashlib.sha256
    stack: list[bytes] = []
    push = stack.append
    pop = stack.pop
    count = 0
    for item in hashes:
        if type(item) is not bytes or len(item) != HASH_SIZE:
            raise ValueError(f"hash #{count} is not {HASH_SIZE} bytes")
        count += 1
        # Each trailing zero bit of the new count completes one perfect subtree.
        merges = count
        while not merges & 1:
            item = sha256(_NODE_PREFIX + pop() + item).digest()
            merges >>= 1
        push(item)
    if not stack:
        return 0, EMPTY_ROOT
    root = pop()
    while stack:
        root = sha256(_NODE_PREFIX + pop() + root).digest()
    return count, root


def aligned_subtree_hashes(leaf_hashes: Sequence[bytes], height: int) -> list[bytes]:
    """Hashes of each complete aligned block of ``2**height`` leaves, in order.

    Block ``i`` covers leaves ``[i * 2**height, (i + 1) * 2**height)`` of
    ``leaf_hashes``; a trailing partial block has no hash yet and is left out, so a
    store may save these once and never update them (the log is append-only).
    """
    if height < 0:
        raise ValueError("height must be >= 0")
    width = 1 << height
    complete = len(leaf_hashes) - len(leaf_hashes) % width
    return [
        root_from_leaf_hashes(leaf_hashes[start : start + width])[1]
        for start in range(0, complete, width)
    ]


class LeafHashSource(Protocol):
    """An indexed, append-only store of leaf hashes."""

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """Leaf hashes ``[start, end)``, exactly ``end - start`` of them, in order."""
        ...


@runtime_checkable
class SubtreeHashSource(LeafHashSource, Protocol):
    """A leaf store that may also know hashes of perfect aligned subtrees."""

    def subtree_hash(self, start: int, end: int) -> bytes | None:
        """Hash of the perfect subtree ``[start, end)``, or ``None`` if not cached.

        Only called with ``end - start`` a power of two and ``start`` a multiple of it.
        """
        ...


class ListLeafSource:
    """Leaf hashes held in a list: the reference source, with no subtree cache."""

    def __init__(self, hashes: list[bytes]) -> None:
        self.hashes = hashes

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        return self.hashes[start:end]


def completed_subtrees(
    tile_height: int,
    tile_index: int,
    tile_hash: bytes,
    stored_hash: Callable[[int, int], bytes],
) -> list[tuple[int, int, bytes]]:
    """The aligned subtrees that tile ``tile_index`` completes, as ``(height, index, hash)``.

    The first is the tile itself (height ``tile_height``); each next one is its parent
    for as long as the subtree just completed is a right child, whose left sibling
    comes from ``stored_hash(height, index)``. Storing these whenever a tile of
    ``2**tile_height`` leaves fills keeps every aligned subtree of at least tile height
    stored (about ``2 * n / 2**tile_height`` hashes), which :class:`TiledLeafSource`
    needs; it costs one write per tile plus, amortised, one more.
    """
    completed = [(tile_height, tile_index, tile_hash)]
    height, index, value = tile_height, tile_index, tile_hash
    while index & 1:
        value = node_hash(stored_hash(height, index - 1), value)
        height, index = height + 1, index >> 1
        completed.append((height, index, value))
    return completed


class TiledLeafSource:
    """A source that answers perfect subtrees of at least tile height from a store.

    ``fetch_node(height, index)`` returns the stored hash of the aligned subtree
    covering leaves ``[index * 2**height, (index + 1) * 2**height)`` (kept up to date
    with :func:`completed_subtrees`; in bulk, height ``h`` is
    ``aligned_subtree_hashes(leaf_hashes, h)``), or ``None`` if it has none; smaller
    subtrees, and missing ones, come from ``fetch_leaves``. A proof then costs
    ``O(log n)`` single-hash lookups and a leaf read or two within the (at most two)
    tiles its paths end in. A database-backed store passes its two queries here.
    """

    def __init__(
        self,
        tile_height: int,
        fetch_leaves: Callable[[int, int], list[bytes]],
        fetch_node: Callable[[int, int], bytes | None],
    ) -> None:
        if tile_height < 1:
            raise ValueError("tile_height must be >= 1")
        self.tile_height = tile_height
        self._fetch_leaves = fetch_leaves
        self._fetch_node = fetch_node

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        return self._fetch_leaves(start, end)

    def subtree_hash(self, start: int, end: int) -> bytes | None:
        height = (end - start).bit_length() - 1
        if height < self.tile_height:
            return None
        return self._fetch_node(height, start >> height)


def _split(size: int) -> int:
    """RFC 6962 §2.1: the largest power of two strictly smaller than ``size`` (>= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def _perfect_pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect aligned subtrees whose right fold is MTH of ``[start, end)``.

    Every range an RFC 6962 recursion visits starts at a multiple of a power of two at
    least its size, so repeatedly splitting off the left ``_split`` part yields
    perfect aligned pieces, largest first.
    """
    pieces = []
    while (end - start) & (end - start - 1):
        cut = start + _split(end - start)
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def _fetch_leaves(source: LeafHashSource, start: int, end: int) -> list[bytes]:
    hashes = source.leaf_hashes(start, end)
    if len(hashes) != end - start:
        raise ValueError(f"source returned {len(hashes)} leaf hashes for [{start}, {end})")
    return hashes


def _range_hashes(source: LeafHashSource, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH of each range, using cached subtree hashes where the source has them.

    Uncached pieces are read in few leaf windows, none reading more than twice the
    leaves it needs.
    """
    pieces = sorted({piece for start, end in ranges for piece in _perfect_pieces(start, end)})
    known: dict[tuple[int, int], bytes] = {}
    if isinstance(source, SubtreeHashSource):
        for start, end in pieces:
            if end - start > 1:
                cached = source.subtree_hash(start, end)
                if cached is not None:
                    if len(cached) != HASH_SIZE:
                        raise ValueError(f"cached hash of [{start}, {end}) is not 32 bytes")
                    known[start, end] = cached
    # Merge uncached pieces into leaf windows while a window reads at most twice the
    # leaves its pieces need: one read for the leaf's own tile, not one per level.
    windows: list[tuple[int, int, int, list[tuple[int, int]]]] = []
    for piece in (p for p in pieces if p not in known):
        width = piece[1] - piece[0]
        if windows:
            first, last, needed, members = windows[-1]
            merged_last = max(last, piece[1])
            if merged_last - first <= 2 * (needed + width):
                windows[-1] = (first, merged_last, needed + width, [*members, piece])
                continue
        windows.append((piece[0], piece[1], width, [piece]))
    for first, last, _, members in windows:
        leaves = _fetch_leaves(source, first, last)
        for start, end in members:
            known[start, end] = root_from_leaf_hashes(leaves[start - first : end - first])[1]
    hashes = []
    for start, end in ranges:
        parts = _perfect_pieces(start, end)
        value = known[parts[-1]]
        for part in reversed(parts[:-1]):
            value = node_hash(known[part], value)
        hashes.append(value)
    return hashes


def _check_size(size: int) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise ValueError(f"tree size {size} is outside [0, 2**64)")


def tree_root(source: LeafHashSource, size: int) -> bytes:
    """MTH of the first ``size`` leaves of ``source`` (RFC 6962 §2.1)."""
    _check_size(size)
    if size == 0:
        return EMPTY_ROOT
    return _range_hashes(source, [(0, size)])[0]


def inclusion_proof(source: LeafHashSource, index: int, size: int) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(index, D[0:size]): sibling hashes from leaf to root.

    Raises ``ValueError`` unless ``0 <= index < size``.
    """
    _check_size(size)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    siblings: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        cut = start + _split(end - start)
        if index < cut:
            siblings.append((cut, end))
            end = cut
        else:
            siblings.append((start, cut))
            start = cut
    siblings.reverse()  # PATH lists the deepest sibling first
    return _range_hashes(source, siblings)


def consistency_proof(source: LeafHashSource, old_size: int, new_size: int) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(old_size, D[0:new_size]).

    Empty when ``old_size`` equals ``new_size`` (RFC 9162 §2.1.4.1:
    ``SUBPROOF(m, D[m], true) = {}``) or is 0 (the empty tree is a prefix of every
    tree; §2.1.4.1 defines PROOF for ``0 < m``), which :func:`verify_consistency`
    accepts with the right roots. Raises ``ValueError`` unless
    ``0 <= old_size <= new_size``.
    """
    _check_size(new_size)
    if not 0 <= old_size <= new_size:
        raise ValueError(f"old size {old_size} is not in [0, {new_size}]")
    if old_size in (0, new_size):
        return []
    nodes: list[tuple[int, int]] = []
    start, end, whole_old_tree = 0, new_size, True
    # SUBPROOF(m, D[start:end], b), unrolled; `old_size` stays absolute.
    while old_size != end:
        cut = start + _split(end - start)
        if old_size <= cut:
            nodes.append((cut, end))
            end = cut
        else:
            nodes.append((start, cut))
            start, whole_old_tree = cut, False
    if not whole_old_tree:
        nodes.append((start, end))
    nodes.reverse()  # SUBPROOF emits its deepest node first
    return _range_hashes(source, nodes)


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash")
    return bytes(value)


def _check_tree_size(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_TREE_SIZE:
        raise ProofError(f"{what} is not an integer in [0, 2**64)")
    return value


def _check_proof(proof: object, limit: int) -> list[bytes]:
    if not isinstance(proof, list | tuple):
        raise ProofError("proof is not a list of hashes")
    if len(proof) > limit:
        raise ProofError(f"proof has {len(proof)} hashes, more than any tree needs")
    return [_check_hash(item, f"proof hash #{i}") for i, item in enumerate(proof)]


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2. Returns ``None`` on success; raises :class:`ProofError` on any
    failure or malformed argument, and nothing else.
    """
    leaf = _check_hash(leaf_hash, "leaf hash")
    expected = _check_hash(root, "root")
    index = _check_tree_size(index, "leaf index")
    size = _check_tree_size(size, "tree size")
    path = _check_proof(proof, _MAX_INCLUSION_PROOF)
    if index >= size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn, computed = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            computed = node_hash(sibling, computed)
            # A right-edge subtree has no sibling on the levels where fn is even:
            # climb past them.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            computed = node_hash(computed, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    if computed != expected:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int,
    new_size: int,
    proof: Sequence[bytes],
    old_root: bytes,
    new_root: bytes,
) -> None:
    """Check that the tree of ``old_size`` with ``old_root`` is a prefix of the new one.

    RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``, where an empty proof fails
    (step 1). Its edges, where the RFC has nothing to verify:

    - equal sizes: the proof is empty (§2.1.4.1, ``SUBPROOF(m, D[m], true) = {}``) and
      the roots are equal;
    - ``old_size == 0``: the proof is empty and ``old_root`` is the root of the empty
      tree, ``SHA-256("")`` (§2.1.1); at ``0 == new_size`` so is ``new_root``;
    - ``old_size > new_size``: refused (a tree never shrinks).

    Raises :class:`ProofError` on any failure or malformed argument, and nothing else.
    """
    first = _check_tree_size(old_size, "old size")
    second = _check_tree_size(new_size, "new size")
    first_root = _check_hash(old_root, "old root")
    second_root = _check_hash(new_root, "new root")
    path = _check_proof(proof, _MAX_CONSISTENCY_PROOF)
    if first > second:
        raise ProofError(f"old size {first} is larger than new size {second}")
    if first == 0:
        # Only SHA-256("") is the root of the empty tree (RFC 9162 §2.1.1), whatever
        # the new size: two equal roots of size 0 prove nothing unless they are it.
        if path:
            raise ProofError("the empty tree needs an empty consistency proof")
        if first_root != EMPTY_ROOT:
            raise ProofError("old root is not the root of the empty tree")
    if first == second:
        if path:
            raise ProofError("trees of equal size need an empty consistency proof")
        if first_root != second_root:
            raise ProofError("trees of equal size have different roots")
        return
    if first == 0:
        return
    if not path:
        raise ProofError("consistency proof is empty")
    # Step 2: when the old tree is a perfect subtree its root is the proof's start.
    if first & (first - 1) == 0:
        path = [first_root, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the tree is deep")
    if fr != first_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != second_root:
        raise ProofError("consistency proof does not lead to the new root")
