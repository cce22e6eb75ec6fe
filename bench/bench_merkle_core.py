"""Benchmark the pure Merkle core: streaming root, tile building, proofs over tiles.

Run: ``.venv/bin/python bench/bench_merkle_core.py [--leaves 1000000] [--proofs 1000]``.
No database: leaves and tile hashes are in lists, so these are lower bounds for a
store-backed source (add its query latency: per proof, O(log n) single-hash lookups
and one or two leaf reads within a tile).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from consent_ledger.proofs.merkle import (
    TiledLeafSource,
    aligned_subtree_hashes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    tree_root,
    verify_consistency,
    verify_inclusion,
)


def best_of(runs: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings)


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1e3:.3f} ms, p99 {cuts[98] * 1e3:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=1000)
    parser.add_argument("--tile-height", type=int, default=8)
    args = parser.parse_args()
    size, tile_height = args.leaves, args.tile_height
    rng = random.Random(6962)

    hashes = [leaf_hash(i.to_bytes(8, "big")) for i in range(size)]
    seconds = best_of(3, lambda: root_from_leaf_hashes(hashes))
    print(f"root_from_leaf_hashes, {size:,} leaves: {seconds:.3f} s (best of 3)")

    seconds = best_of(3, lambda: root_from_leaf_hashes(iter(hashes)))
    print(f"root_from_leaf_hashes, {size:,} leaves from an iterator: {seconds:.3f} s")

    started = time.perf_counter()
    nodes: dict[tuple[int, int], bytes] = {}
    height, level = tile_height, aligned_subtree_hashes(hashes, tile_height)
    while level:
        nodes.update(((height, index), value) for index, value in enumerate(level))
        height, level = height + 1, aligned_subtree_hashes(level, 1)
    print(
        f"stored subtrees of >= {1 << tile_height} leaves: {len(nodes):,}, built in "
        f"{time.perf_counter() - started:.3f} s"
    )

    read = {"leaves": 0, "nodes": 0}

    def fetch_leaves(start: int, end: int) -> list[bytes]:
        read["leaves"] += end - start
        return hashes[start:end]

    def fetch_node(height: int, index: int) -> bytes | None:
        read["nodes"] += 1
        return nodes.get((height, index))

    source = TiledLeafSource(tile_height, fetch_leaves, fetch_node)
    _, root = root_from_leaf_hashes(hashes)
    seconds = best_of(3, lambda: tree_root(source, size))
    print(f"tree_root from tiles at {size:,}: {seconds * 1e3:.3f} ms")

    proof_times, verify_times = [], []
    read.update(leaves=0, nodes=0)
    for _ in range(args.proofs):
        index = rng.randrange(size)
        started = time.perf_counter()
        proof = inclusion_proof(source, index, size)
        proof_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        verify_inclusion(hashes[index], index, size, proof, root)
        verify_times.append(time.perf_counter() - started)
    print(
        f"inclusion_proof at {size:,} with tiles: {percentiles(proof_times)}; "
        f"reads per proof: {read['leaves'] / args.proofs:.0f} leaves, "
        f"{read['nodes'] / args.proofs:.1f} stored-subtree lookups"
    )
    print(f"verify_inclusion: {percentiles(verify_times)}")

    consistency_times = []
    for _ in range(args.proofs // 10):
        old = rng.randrange(1, size)
        started = time.perf_counter()
        proof = consistency_proof(source, old, size)
        consistency_times.append(time.perf_counter() - started)
        verify_consistency(old, size, proof, tree_root(source, old), root)
    print(f"consistency_proof to {size:,} with tiles: {percentiles(consistency_times)}")


if __name__ == "__main__":
    main()
