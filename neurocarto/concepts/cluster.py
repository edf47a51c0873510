"""Neuron clustering: neurons whose top-k image sets overlap detect the same concept.

Reads each neuron's top-k image ids (pass 1); gives verified similar pairs and clusters.
1. MinHash signatures of every top-k set, datasketch's `affine32` scheme (MurmurHash3's
   finalizer on the image id, then a·h + b mod 2³²) in a numba kernel, bit-identical to
   `datasketch.MinHash(seed=…).update_batch(ids)` and much faster.
2. LSH banding: b bands of r rows, with r the largest that keeps b·r within the hash budget
   and b the fewest bands that make a pair at the target Jaccard t a candidate with
   probability ≥ `recall`: P(candidate | J) = 1 − (1 − J^r)^b (the S-curve). Candidates are
   neurons sharing a band's bucket (the layer is part of the bucket key when clustering per
   layer). Work is linear in the number of neurons; no all-pairs step.
3. Every candidate is verified with its exact Jaccard.
4. (Refinement by spatial co-activation: `coactivation.py`, which needs the model.)
5. (Grouping of the pairs into a concept hierarchy and its cuts: `hierarchy.py`.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

HASH_MASK = np.uint64(0xFFFFFFFF)


def clustering_sets(top_images: np.ndarray, top_values: np.ndarray, n_images: int) -> np.ndarray:
    """Top-k sets for Jaccard: entries where the neuron did not fire (value ≤ 0) become ids unique to
    that neuron, so silent neurons' arbitrary zero-valued top images never make them similar."""
    n_neurons, k = top_images.shape
    unique_ids = n_images + np.arange(n_neurons * k, dtype=np.int64).reshape(n_neurons, k)
    return np.where(top_values > 0, top_images, unique_ids)


@dataclass(frozen=True)
class Banding:
    """LSH banding: `bands` × `rows` MinHash values; candidates collide in ≥ 1 band."""

    bands: int
    rows: int

    @property
    def hashes(self) -> int:
        return self.bands * self.rows

    def candidate_probability(self, jaccard: np.ndarray | float) -> np.ndarray | float:
        return 1 - (1 - np.asarray(jaccard, dtype=np.float64) ** self.rows) ** self.bands

    @classmethod
    def for_threshold(cls, threshold: float, recall: float = 0.97, max_hashes: int = 128) -> "Banding":
        """Most selective banding (largest r) that keeps P(candidate | threshold) ≥ recall."""
        best = None
        for rows in range(1, max_hashes + 1):
            per_band = threshold ** rows
            if per_band <= 0 or per_band >= 1:
                bands = 1
            else:
                bands = math.ceil(math.log(1 - recall) / math.log(1 - per_band))
            if bands * rows > max_hashes:
                break
            best = cls(bands, rows)
        if best is None:
            raise ValueError(f"no banding reaches recall {recall} at Jaccard {threshold} within {max_hashes} hashes")
        return best


@numba.njit(cache=True, inline="always")
def _fmix32(value):
    value = value ^ (value >> np.uint64(16))
    value = (value * np.uint64(0x85EBCA6B)) & HASH_MASK
    value = value ^ (value >> np.uint64(13))
    value = (value * np.uint64(0xC2B2AE35)) & HASH_MASK
    return value ^ (value >> np.uint64(16))


@numba.njit(parallel=True, cache=True)
def _signatures(sets, a, b):
    n_sets, set_size = sets.shape
    n_hashes = a.shape[0]
    out = np.empty((n_sets, n_hashes), dtype=np.uint32)
    for n in prange(n_sets):
        mixed = np.empty(set_size, dtype=np.uint64)
        for j in range(set_size):
            mixed[j] = _fmix32(np.uint64(sets[n, j]) & HASH_MASK)
        for p in range(n_hashes):
            smallest = HASH_MASK
            for j in range(set_size):
                value = (a[p] * mixed[j] + b[p]) & HASH_MASK
                if value < smallest:
                    smallest = value
            out[n, p] = smallest
    return out


def minhash_permutations(n_hashes: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 parameters (a odd, b) for a seed, as uint64."""
    generator = np.random.RandomState(seed)
    a = generator.randint(0, 1 << 31, n_hashes, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = generator.randint(0, 1 << 32, n_hashes, dtype=np.uint64).astype(np.uint32)
    return a.astype(np.uint64), b.astype(np.uint64)


def minhash_signatures(top_images: np.ndarray, n_hashes: int, seed: int = 1) -> np.ndarray:
    """(neurons, k) image ids → (neurons, n_hashes) uint32 MinHash signatures."""
    a, b = minhash_permutations(n_hashes, seed)
    return _signatures(np.ascontiguousarray(top_images, dtype=np.int64), a, b)


@numba.njit(cache=True)
def _band_keys(signatures, start, rows, groups):
    n = signatures.shape[0]
    keys = np.empty(n, dtype=np.uint64)
    for i in range(n):
        key = np.uint64(groups[i]) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(start)
        for r in range(rows):
            key = (key ^ np.uint64(signatures[i, start + r])) * np.uint64(0x100000001B3)
            key = key ^ (key >> np.uint64(29))
        keys[i] = key
    return keys


@numba.njit(cache=True, inline="always")
def _rows_equal(signatures_a, i, signatures_b, j, start, rows):
    for r in range(start, start + rows):
        if signatures_a[i, r] != signatures_b[j, r]:
            return False
    return True


@numba.njit(cache=True, inline="always")
def first_equal_band(signatures_a, i, signatures_b, j, band, rows):
    """Whether row i of A and row j of B are equal on this band's rows and on no earlier band's (so that a
    candidate pair comes from one band only)."""
    if not _rows_equal(signatures_a, i, signatures_b, j, band * rows, rows):
        return False
    for earlier in range(band):
        if _rows_equal(signatures_a, i, signatures_b, j, earlier * rows, rows):
            return False
    return True


@numba.njit(cache=True)
def _bucket_pairs(order, run_starts, run_stops, count, signatures, band, rows):
    """Pairs (i < j) within each run order[start:stop] of equal bucket keys that are truly equal on this
    band's rows and on no earlier band's."""
    first = np.empty(count, dtype=np.int64)
    second = np.empty(count, dtype=np.int64)
    filled = 0
    for run in range(run_starts.shape[0]):
        for x in range(run_starts[run], run_stops[run]):
            for y in range(x + 1, run_stops[run]):
                i, j = order[x], order[y]
                if first_equal_band(signatures, i, signatures, j, band, rows):
                    first[filled] = min(i, j)
                    second[filled] = max(i, j)
                    filled += 1
    return first[:filled], second[:filled]


def lsh_candidates(signatures: np.ndarray, banding: Banding, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unique candidate pairs (i < j): neurons of the same group equal on all rows of a band."""
    n = len(signatures)
    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    signatures = np.ascontiguousarray(signatures)
    firsts, seconds = [], []
    for band in range(banding.bands):
        start = band * banding.rows
        keys = _band_keys(signatures, start, banding.rows, groups)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        bounds = np.concatenate([[0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1, [n]])
        sizes = np.diff(bounds)
        shared = sizes > 1                       # buckets of one neuron make no pair
        first, second = _bucket_pairs(order, bounds[:-1][shared], bounds[1:][shared],
                                      int((sizes[shared] * (sizes[shared] - 1) // 2).sum()), signatures, band,
                                      banding.rows)
        same_group = groups[first] == groups[second]
        firsts.append(first[same_group])
        seconds.append(second[same_group])
    if not firsts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    order = np.lexsort((second, first))
    return first[order], second[order]


@numba.njit(parallel=True, cache=True)
def _pair_jaccard(sorted_sets, first, second):
    out = np.empty(first.shape[0], dtype=np.float32)
    k = sorted_sets.shape[1]
    for p in prange(first.shape[0]):
        a, b = sorted_sets[first[p]], sorted_sets[second[p]]
        x = y = shared = 0
        while x < k and y < k:
            if a[x] == b[y]:
                shared += 1
                x += 1
                y += 1
            elif a[x] < b[y]:
                x += 1
            else:
                y += 1
        out[p] = shared / (2 * k - shared)
    return out


def pair_jaccard(top_images: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the top-k sets of each pair (first[p], second[p])."""
    sorted_sets = np.sort(np.asarray(top_images, dtype=np.int64), axis=1)
    return _pair_jaccard(sorted_sets, np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64))


def exact_similar_pairs(top_images: np.ndarray, threshold: float,
                        groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs with Jaccard ≥ threshold, from the sparse co-occurrence product A·Aᵀ.

    Quadratic in the worst case: the reference for the LSH path, and the faster choice for small runs.
    """
    from scipy import sparse

    n, k = top_images.shape
    incidence = sparse.csr_matrix((np.ones(n * k, dtype=np.float32), top_images.reshape(-1),
                                   np.arange(0, n * k + 1, k)), shape=(n, int(top_images.max()) + 1))
    shared = sparse.triu(incidence @ incidence.T, k=1).tocoo()
    jaccard = shared.data / (2 * k - shared.data)
    keep = jaccard >= threshold
    if groups is not None:
        keep &= groups[shared.row] == groups[shared.col]
    order = np.lexsort((shared.col[keep], shared.row[keep]))
    return (shared.row[keep][order].astype(np.int64), shared.col[keep][order].astype(np.int64),
            jaccard[keep][order].astype(np.float32))


def similar_pairs(top_images: np.ndarray, threshold: float, groups: np.ndarray | None = None,
                  banding: Banding | None = None, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Verified pairs with Jaccard ≥ threshold via MinHash + LSH: (first, second, jaccard, candidates)."""
    banding = banding or Banding.for_threshold(threshold)
    signatures = minhash_signatures(top_images, banding.hashes, seed)
    first, second = lsh_candidates(signatures, banding, groups)
    jaccard = pair_jaccard(top_images, first, second)
    keep = jaccard >= threshold
    return first[keep], second[keep], jaccard[keep], len(first)


def mean_jaccard(sets: np.ndarray, members: np.ndarray) -> float:
    """Mean pairwise Jaccard of the members' sets (0 for fewer than two members)."""
    first, second = np.triu_indices(len(members), k=1)
    return float(pair_jaccard(sets, members[first], members[second]).mean()) if len(first) else 0.0


def cluster_tables(labels: np.ndarray, sets: np.ndarray, top_images: np.ndarray) -> dict[str, np.ndarray]:
    """A clustering as flat arrays: members of cluster c are `members[offsets[c]:offsets[c + 1]]`; each
    cluster's mean within-cluster Jaccard; the union of its members' top images, flat the same way."""
    members = [np.flatnonzero(labels == label) for label in range(labels.max() + 1)]
    unions = [np.unique(top_images[m]) for m in members]

    def flat(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        return offsets, (np.concatenate(parts) if parts else np.empty(0, dtype=np.int64))

    (offsets, flat_members), (image_offsets, images) = flat(members), flat(unions)
    return {"cluster_offsets": offsets, "cluster_members": flat_members,
            "cluster_similarity": np.array([mean_jaccard(sets, m) for m in members], dtype=np.float32),
            "cluster_image_offsets": image_offsets, "cluster_images": images}
