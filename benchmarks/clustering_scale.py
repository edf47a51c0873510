"""Similar-neuron search at scale: numba MinHash + LSH + verification vs exact all-pairs vs datasketch.

    python benchmarks/clustering_scale.py [--sizes 10000 100000 1000000] [--datasketch-max 100000]
                                          [--floor-sizes 100000 1000000]

Synthetic neurons with k = 100 top images out of 1.28M image ids: planted groups of 5–10
members (each keeps 55–90 of its group's 100 core images, so member pairs span Jaccard ~0.2–0.8)
and as many random singletons. For each size, in the same run: our path's time (signatures,
candidates, verification), candidates per neuron (linear growth ⇔ constant), recall of the pairs
with Jaccard ≥ 0.3; exact all-pairs by sparse A·Aᵀ where it still runs; datasketch's MinHashLSH
(threshold 0.3, 128 permutations) where it is not too slow. Recall is against exact all-pairs
where it ran, else against the planted pairs measured exactly (random singletons never reach 0.3).

Then the concept hierarchy at the floor J = 0.05, as the cluster stage builds it: neurons in layers of
1,024 (candidates share a layer), planted groups inside a layer whose members keep 8–90 of their core's
100 images (pair Jaccard from ~0.03 to ~0.8); signatures, candidates and verification at the floor's
banding, then the average-linkage merge order. Recall at the floor: the share of planted pairs with
J ≥ 0.05 that are verified (random pairs share ~0.008 images and never reach it).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from neurocarto.concepts.cluster import Banding, exact_similar_pairs, lsh_candidates, minhash_signatures, pair_jaccard
from neurocarto.concepts.hierarchy import linkage_merges

K, N_IMAGES, THRESHOLD, FLOOR, LAYER = 100, 1_280_000, 0.3, 0.05, 1024


def synthetic(n_neurons: int, seed: int = 0, kept: tuple[int, int] = (55, 91),
              layer: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neurons × K image ids, planted pair first, planted pair second); with `layer`, no planted group
    crosses a boundary between blocks of that many neurons."""
    rng = np.random.default_rng(seed)
    sets = rng.integers(0, N_IMAGES, size=(n_neurons, K), dtype=np.int64)
    n_grouped = n_neurons // 2
    sizes = rng.integers(5, 11, size=n_grouped // 5)
    sizes = sizes[np.cumsum(sizes) <= n_grouped]
    first, second, start = [], [], 0
    cores = rng.integers(0, N_IMAGES, size=(len(sizes), K), dtype=np.int64)
    for group, size in enumerate(sizes):
        if layer and start // layer != (start + size - 1) // layer:
            start = (start // layer + 1) * layer
        if start + size > n_neurons:
            break
        members = np.arange(start, start + size)
        for member in members:
            keep = rng.integers(*kept)
            sets[member, :keep] = rng.choice(cores[group], keep, replace=False)
        a, b = np.triu_indices(size, k=1)
        first.append(members[a])
        second.append(members[b])
        start += size
    # top-k sets hold distinct images: resample the rare duplicate
    for row in np.flatnonzero([len(np.unique(s)) < K for s in sets[:start]]):
        unique = np.unique(sets[row])
        sets[row] = np.concatenate([unique, N_IMAGES + rng.choice(10**6, K - len(unique), replace=False)])
    return sets, np.concatenate(first), np.concatenate(second)


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--exact-max", type=int, default=100_000)
    parser.add_argument("--datasketch-max", type=int, default=10_000)
    parser.add_argument("--floor-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    args = parser.parse_args()
    banding = Banding.for_threshold(THRESHOLD)
    print(f"banding: {banding.bands} bands × {banding.rows} rows; P(candidate) at J = 0.2, 0.3, 0.5: "
          + ", ".join(f"{banding.candidate_probability(j):.3f}" for j in (0.2, 0.3, 0.5)))
    minhash_signatures(np.zeros((2, K), dtype=np.int64), banding.hashes)          # JIT outside the timings
    lsh_candidates(np.zeros((2, banding.hashes), dtype=np.uint32), banding)
    pair_jaccard(np.zeros((2, K), dtype=np.int64), np.array([0]), np.array([1]))
    print("| neurons | ours: signatures + candidates + verify (s) | candidates / neuron | recall (J ≥ 0.3) "
          "| exact A·Aᵀ (s) | datasketch MinHashLSH (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        sets, planted_first, planted_second = synthetic(size)
        signatures, t_signatures = timed(lambda: minhash_signatures(sets, banding.hashes))
        (first, second), t_candidates = timed(lambda: lsh_candidates(signatures, banding))
        jaccard, t_verify = timed(lambda: pair_jaccard(sets, first, second))
        ours = set((first[jaccard >= THRESHOLD] * size + second[jaccard >= THRESHOLD]).tolist())
        exact_time = "—"
        if size <= args.exact_max:
            (exact_first, exact_second, _), elapsed = timed(lambda: exact_similar_pairs(sets, THRESHOLD))
            truth = set((exact_first * size + exact_second).tolist())
            exact_time = f"{elapsed:.1f}"
        else:
            planted_jaccard = pair_jaccard(sets, planted_first, planted_second)
            keep = planted_jaccard >= THRESHOLD
            truth = set((planted_first[keep] * size + planted_second[keep]).tolist())
        recall = len(ours & truth) / max(len(truth), 1)
        sketch_time = "—"
        if size <= args.datasketch_max:
            sketch_time = f"{timed(lambda: datasketch_pairs(sets))[1]:.1f}"
        ours_time = t_signatures + t_candidates + t_verify
        print(f"| {size:,} | {ours_time:.1f} ({t_signatures:.1f} + {t_candidates:.1f} + {t_verify:.1f}) | "
              f"{len(first) / size:.2f} | {recall:.3f} of {len(truth):,} | {exact_time} | {sketch_time} |", flush=True)
    if args.floor_sizes:
        hierarchy_at_floor(args.floor_sizes)


def hierarchy_at_floor(sizes: list[int]) -> None:
    """Candidates, verification and the merge order down to the floor, per layer, as the cluster stage."""
    banding = Banding.for_threshold(FLOOR)
    print(f"\nfloor {FLOOR}: {banding.bands} bands × {banding.rows} rows, layers of {LAYER:,} neurons")
    print("| neurons | signatures + candidates + verify + hierarchy (s) | candidates / neuron | recall (J ≥ 0.05) "
          "| merges |")
    print("|---:|---:|---:|---:|---:|")
    for size in sizes:
        sets, planted_first, planted_second = synthetic(size, kept=(8, 91), layer=LAYER)
        layers = np.arange(size) // LAYER
        signatures, t_signatures = timed(lambda: minhash_signatures(sets, banding.hashes))
        (first, second), t_candidates = timed(lambda: lsh_candidates(signatures, banding, layers))
        jaccard, t_verify = timed(lambda: pair_jaccard(sets, first, second))
        keep = jaccard >= FLOOR
        merges, t_hierarchy = timed(lambda: linkage_merges(size, first[keep], second[keep], jaccard[keep], FLOOR))
        planted_jaccard = pair_jaccard(sets, planted_first, planted_second)
        truth = planted_first[planted_jaccard >= FLOOR] * size + planted_second[planted_jaccard >= FLOOR]
        recall = np.isin(truth, first[keep] * size + second[keep]).mean()
        total = t_signatures + t_candidates + t_verify + t_hierarchy
        print(f"| {size:,} | {total:.1f} ({t_signatures:.1f} + {t_candidates:.1f} + {t_verify:.1f} + {t_hierarchy:.1f}) "
              f"| {len(first) / size:.2f} | {recall:.3f} of {len(truth):,} | {len(merges):,} |", flush=True)


def datasketch_pairs(sets: np.ndarray) -> set[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    sketches = []
    for i, row in enumerate(sets):
        sketch = MinHash(num_perm=128, hashfunc=int)
        sketch.update_batch(row.tolist())
        lsh.insert(i, sketch)
        sketches.append(sketch)
    return {(min(i, j), max(i, j)) for i, sketch in enumerate(sketches) for j in lsh.query(sketch) if i != j}


if __name__ == "__main__":
    main()
