"""Neurons and concepts of two runs over the same images, matched by the overlap of their top-k image sets.

Reads each run's top-k sets (`cluster.clustering_sets`, run B's silent entries numbered past run A's) with the
layer of every neuron, and each run's concepts (clusters at a cut, and the neurons in none); gives:
1. Cross pairs: every pair (a of A, b of B) with Jaccard J(a, b) ≥ a candidate threshold. Where the runs are large
   and the threshold high enough for a selective banding, by MinHash + LSH across the runs — both runs hashed with
   the same permutations, a pair a candidate when a band of its two signatures is equal (the S-curve of
   `cluster.Banding` gives the recall at the threshold), then verified with its exact Jaccard: linear in the
   neurons where few pairs share images. Else exactly: the sparse product of the two image incidences, a block of
   A's neurons at a time, which visits every pair sharing an image.
2. A null per layer pair (layer of A × layer of B): the Jaccard of pairs between the two layers that cannot be
   counterparts (each neuron's few most similar in the other layer left out). A pair is a match when J clears the
   null's quantile and MEAN_MULTIPLE × its mean: early layers, whose neurons share bright images, have a high mean,
   which a quantile alone would not hold to.
3. Each neuron's best match in the other run, and a layer × layer similarity: the mean, over a layer's neurons,
   of their best Jaccard within the other layer (symmetrised).
4. Concepts: the similarity of concept C of A and D of B is their average linkage, Σ J(a, b) / (|C|·|D|) over
   the cross pairs found (absent pairs count 0), as the concept hierarchy groups neurons. In the other run's layer
   that holds its best match, a concept matches every concept whose similarity clears that layer pair's
   threshold: none → **unique**; several → **split**; one, which itself matches several → **merged**; else
   **shared**.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse

from neurocarto.concepts.cluster import (Banding, _band_keys, _pair_jaccard, first_equal_band, minhash_signatures,
                                         pair_jaccard)

EXACT_PAIRS = 5e7           # at most this many neuron pairs (n_A · n_B): every pair exactly, no LSH
DENSE_ENTRIES = 2 ** 25     # the exact product in dense blocks of this many entries where run B's incidence fits
NULL_QUANTILE = 0.995
MEAN_MULTIPLE = 5.0         # a match overlaps at least this many times a random pair of the same two layers
NULL_ROWS, NULL_COLUMNS = 24, 400     # a layer pair's null: so many neurons of one layer against so many of the other
PARTNERS = 3                # … each neuron's most similar left out (its counterpart, and a cluster's mates)
SHARED, SPLIT, MERGED, UNIQUE = "shared", "split", "merged", "unique"
CATEGORIES = (SHARED, SPLIT, MERGED, UNIQUE)


@numba.njit(cache=True)
def _joined_pairs(order_a, keys_a, order_b, keys_b, signatures_a, signatures_b, band, rows):
    """Pairs (a, b) equal on this band's rows whose bucket keys are equal, and equal on no earlier band (so
    each candidate comes from one band only)."""
    first, second = [], []
    x = y = 0
    while x < len(order_a) and y < len(order_b):
        key_a, key_b = keys_a[order_a[x]], keys_b[order_b[y]]
        if key_a < key_b:
            x += 1
        elif key_b < key_a:
            y += 1
        else:
            x_end, y_end = x, y
            while x_end < len(order_a) and keys_a[order_a[x_end]] == key_a:
                x_end += 1
            while y_end < len(order_b) and keys_b[order_b[y_end]] == key_a:
                y_end += 1
            for p in range(x, x_end):
                for q in range(y, y_end):
                    i, j = order_a[p], order_b[q]
                    if first_equal_band(signatures_a, i, signatures_b, j, band, rows):
                        first.append(i)
                        second.append(j)
            x, y = x_end, y_end
    return np.array(first, dtype=np.int64), np.array(second, dtype=np.int64)


def lsh_cross_candidates(signatures_a: np.ndarray, signatures_b: np.ndarray,
                         banding: Banding) -> tuple[np.ndarray, np.ndarray]:
    """Unique candidate pairs (a, b), sorted: equal on all rows of at least one band."""
    no_groups_a = np.zeros(len(signatures_a), dtype=np.int64)
    no_groups_b = np.zeros(len(signatures_b), dtype=np.int64)
    signatures_a, signatures_b = np.ascontiguousarray(signatures_a), np.ascontiguousarray(signatures_b)
    firsts, seconds = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for band in range(banding.bands):
        keys_a = _band_keys(signatures_a, band * banding.rows, banding.rows, no_groups_a)
        keys_b = _band_keys(signatures_b, band * banding.rows, banding.rows, no_groups_b)
        first, second = _joined_pairs(np.argsort(keys_a, kind="stable"), keys_a, np.argsort(keys_b, kind="stable"),
                                      keys_b, signatures_a, signatures_b, band, banding.rows)
        firsts.append(first)
        seconds.append(second)
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    order = np.lexsort((second, first))
    return first[order], second[order]


def cross_jaccard(sets_a: np.ndarray, sets_b: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Exact Jaccard of the top-k sets of each pair (a = first[p] of A, b = second[p] of B)."""
    both = np.concatenate([sets_a, sets_b])
    return pair_jaccard(both, np.asarray(first, dtype=np.int64), len(sets_a) + np.asarray(second, dtype=np.int64))


def exact_cross_pairs(sets_a: np.ndarray, sets_b: np.ndarray, threshold: float,
                      block: int = 8192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (a, b) with Jaccard ≥ threshold, from the product of the two image incidences, sorted: dense (BLAS)
    where run B's incidence has at most DENSE_ENTRIES entries, else sparse; `block` rows of A at a time (memory
    bounded by one block's products)."""
    (n_a, k_a), (n_b, k_b) = sets_a.shape, sets_b.shape
    _, inverse, counts = np.unique(np.concatenate([sets_a.ravel(), sets_b.ravel()]), return_inverse=True,
                                   return_counts=True)
    column = (np.cumsum(counts > 1) - 1)[inverse.reshape(-1)]       # only images in two or more sets can be shared
    column[counts[inverse.reshape(-1)] < 2] = -1
    width = max(int(column.max(initial=-1)) + 1, 1)
    dense = n_b * width <= DENSE_ENTRIES

    def incidence(columns: np.ndarray, k: int, rows: slice):
        chosen = columns.reshape(-1, k)[rows]
        row, position = np.nonzero(chosen >= 0)
        matrix = sparse.csr_matrix((np.ones(len(row), dtype=np.float32), (row, chosen[row, position])),
                                   shape=(len(chosen), width))
        return matrix.toarray() if dense else matrix

    columns_a, columns_b = column[:n_a * k_a], column[n_a * k_a:]
    columns = incidence(columns_b, k_b, slice(None)).T
    if dense:
        block = max(1, DENSE_ENTRIES // max(len(sets_b), 1))
    else:
        columns = columns.tocsr()
    found = [(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))]
    for start in range(0, n_a, block):
        shared = incidence(columns_a, k_a, slice(start, start + block)) @ columns
        if dense:
            jaccard = shared / (k_a + k_b - shared)
            rows, cols = np.nonzero((jaccard >= threshold) & (shared > 0))  # row by row, columns ascending
            found.append((start + rows.astype(np.int64), cols.astype(np.int64), jaccard[rows, cols]))
            continue
        shared.sort_indices()                                               # row by row, columns ascending
        rows = np.repeat(np.arange(shared.shape[0], dtype=np.int64), np.diff(shared.indptr))
        jaccard = shared.data / (k_a + k_b - shared.data)
        keep = jaccard >= threshold
        found.append((start + rows[keep], shared.indices[keep].astype(np.int64), jaccard[keep].astype(np.float32)))
    first, second, jaccard = (np.concatenate(part) for part in zip(*found))
    return first, second, jaccard


def selective_banding(threshold: float, recall: float) -> Banding | None:
    """The LSH banding for `threshold` at `recall` where it is selective (at least 2 rows a band: one row makes any
    pair sharing an image a likely candidate, and all pairs sharing one are what the exact product visits)."""
    try:
        banding = Banding.for_threshold(threshold, recall)
    except ValueError:
        return None
    return banding if banding.rows >= 2 else None


def cross_pairs(sets_a: np.ndarray, sets_b: np.ndarray, threshold: float, exact: bool | None = None,
                recall: float = 0.995, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a, b) with Jaccard ≥ threshold and their Jaccard: by MinHash + LSH with P(candidate | threshold) ≥
    recall where n_A · n_B > EXACT_PAIRS and a selective banding exists (or `exact` is False), else exactly."""
    banding = selective_banding(threshold, recall)
    if exact is None:
        exact = len(sets_a) * len(sets_b) <= EXACT_PAIRS or banding is None
    if exact:
        return exact_cross_pairs(sets_a, sets_b, threshold)
    banding = banding or Banding.for_threshold(threshold, recall)
    first, second = lsh_cross_candidates(minhash_signatures(sets_a, banding.hashes, seed),
                                         minhash_signatures(sets_b, banding.hashes, seed), banding)
    jaccard = cross_jaccard(sets_a, sets_b, first, second)
    keep = jaccard >= threshold
    return first[keep], second[keep], jaccard[keep]


def layer_pair_null(sets_a: np.ndarray, layer_a: np.ndarray, sets_b: np.ndarray, layer_b: np.ndarray,
                    rows: int = NULL_ROWS, columns: int = NULL_COLUMNS, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(layers of A, layers of B) quantile NULL_QUANTILE and mean of the Jaccard of pairs between the two layers that
    are not counterparts: up to `rows` neurons of one layer (seeded) against up to `columns` of the other, each
    neuron's PARTNERS most similar left out, both ways. Two runs of one model share most neurons' counterparts, which
    random pairs between two small layers would meet often enough to raise a high quantile."""
    rng = np.random.default_rng(seed)
    in_a = [np.flatnonzero(layer_a == layer) for layer in range(int(layer_a.max()) + 1)]
    in_b = [np.flatnonzero(layer_b == layer) for layer in range(int(layer_b.max()) + 1)]
    both = np.sort(np.concatenate([sets_a, sets_b]).astype(np.int64), axis=1)       # run B's rows past run A's
    past_a = len(sets_a)

    def some(neurons: np.ndarray, count: int) -> np.ndarray:
        return neurons if len(neurons) <= count else np.sort(rng.choice(neurons, count, replace=False))

    def without_partners(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
        """The Jaccard of every (mine, theirs) pair (rows of `both`), each of mine's PARTNERS highest left out: what
        is left cannot be its counterpart in the other run."""
        jaccard = _pair_jaccard(both, np.repeat(mine, len(theirs)), np.tile(theirs, len(mine)))
        return np.sort(jaccard.reshape(len(mine), len(theirs)), axis=1)[:, :max(len(theirs) - PARTNERS, 0)].ravel()

    quantiles, means = np.zeros((len(in_a), len(in_b))), np.zeros((len(in_a), len(in_b)))
    for x, neurons_a in enumerate(in_a):
        for y, neurons_b in enumerate(in_b):
            if len(neurons_a) == 0 or len(neurons_b) == 0:
                continue
            jaccard = np.concatenate([without_partners(some(neurons_a, rows), past_a + some(neurons_b, columns)),
                                      without_partners(past_a + some(neurons_b, rows), some(neurons_a, columns))])
            if len(jaccard):
                quantiles[x, y], means[x, y] = np.quantile(jaccard, NULL_QUANTILE), jaccard.mean()
    return quantiles, means


def match_thresholds(quantiles: np.ndarray, means: np.ndarray, floor: float) -> np.ndarray:
    """(layers of A, layers of B) the Jaccard a match must reach: the null's quantile, MEAN_MULTIPLE × its mean,
    and the floor, whichever is highest."""
    return np.maximum(np.maximum(quantiles, MEAN_MULTIPLE * means), floor)


@numba.njit(cache=True)
def _best_partners(n, mine, theirs, jaccard):
    partner, best = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.float32)
    for p in range(len(mine)):
        m, j, t = mine[p], jaccard[p], theirs[p]
        if partner[m] < 0 or j > best[m] or (j == best[m] and t < partner[m]):
            partner[m], best[m] = t, j
    return partner, best


def best_partners(n: int, mine: np.ndarray, theirs: np.ndarray, jaccard: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron of one run, its most similar neuron of the other (−1: no pair found) and their Jaccard (ties:
    the lowest index)."""
    return _best_partners(n, np.asarray(mine, dtype=np.int64), np.asarray(theirs, dtype=np.int64),
                          np.asarray(jaccard, dtype=np.float32))


@numba.njit(cache=True)
def _best_in_layers(n_mine, n_layers, mine, their_layer, jaccard):
    best = np.zeros((n_mine, n_layers))
    for p in range(len(mine)):
        if jaccard[p] > best[mine[p], their_layer[p]]:
            best[mine[p], their_layer[p]] = jaccard[p]
    return best


def layer_similarity(first: np.ndarray, second: np.ndarray, jaccard: np.ndarray, layer_a: np.ndarray,
                     layer_b: np.ndarray) -> np.ndarray:
    """(layers of A, layers of B): the mean over a layer's neurons of their best Jaccard in the other layer, both
    ways, averaged (pairs not found count 0)."""
    n_layers_a, n_layers_b = int(layer_a.max()) + 1, int(layer_b.max()) + 1

    def best_in_layers(mine, theirs, layer_mine, layer_theirs, n_theirs):
        best = _best_in_layers(len(layer_mine), n_theirs, mine, layer_theirs[theirs].astype(np.int64),
                               jaccard.astype(np.float64))
        sums = np.zeros((int(layer_mine.max()) + 1, n_theirs))
        np.add.at(sums, layer_mine, best)
        return sums / np.bincount(layer_mine, minlength=len(sums))[:, None]

    forward = best_in_layers(first, second, layer_a, layer_b, n_layers_b)
    backward = best_in_layers(second, first, layer_b, layer_a, n_layers_a)
    return (forward + backward.T) / 2


@dataclass(frozen=True)
class Concepts:
    """A run's concepts: members of concept c are `members[offsets[c]:offsets[c + 1]]`, all of one layer."""

    offsets: np.ndarray
    members: np.ndarray
    layer: np.ndarray           # (concepts,) the layer of each

    @classmethod
    def from_labels(cls, labels: np.ndarray, layer_of: np.ndarray) -> "Concepts":
        """Each cluster (per layer) of a cut's labels, then every neuron in none alone; ordered by smallest
        member."""
        keys = np.where(labels >= 0, labels, -1 - np.arange(len(labels)))
        _, first_seen, group = np.unique(np.stack([keys, layer_of]), axis=1, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first_seen))
        group = rank[np.asarray(group).reshape(-1)]
        members = np.argsort(group, kind="stable")
        offsets = np.searchsorted(group[members], np.arange(len(first_seen) + 1))
        return cls(offsets.astype(np.int64), members.astype(np.int64), layer_of[members[offsets[:-1]]])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of_neuron(self, n: int) -> np.ndarray:
        """(neurons,) the concept of each neuron."""
        concept = np.empty(n, dtype=np.int64)
        concept[self.members] = np.repeat(np.arange(len(self)), self.sizes)
        return concept

    def averaging(self, n: int) -> sparse.csr_matrix:
        """(concepts, neurons): 1/|C| at C's members."""
        return sparse.csr_matrix((np.repeat(1 / self.sizes, self.sizes), self.members, self.offsets), shape=(len(self), n))


def concept_similarity(concepts_a: Concepts, concepts_b: Concepts, n_a: int, n_b: int, first: np.ndarray,
                       second: np.ndarray, jaccard: np.ndarray) -> sparse.coo_matrix:
    """(concepts of A, concepts of B) average linkage over the cross pairs found, the pairs of concepts with any."""
    pairs = sparse.csr_matrix((jaccard.astype(np.float64), (first, second)), shape=(n_a, n_b))
    return (concepts_a.averaging(n_a) @ pairs @ concepts_b.averaging(n_b).T).tocoo()


def _matched(similarity: sparse.coo_matrix, rows_layer: np.ndarray, cols_layer: np.ndarray, thresholds: np.ndarray,
             n_rows: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per row concept: its best column (−1: none), their similarity, and the columns it matches in the best's
    layer."""
    rows, cols, values = similarity.row, similarity.col, similarity.data
    best, best_value = best_partners(n_rows, rows, cols, values.astype(np.float32))
    clears = values >= thresholds[rows_layer[rows], cols_layer[cols]]
    in_best_layer = (best[rows] >= 0) & (cols_layer[cols] == cols_layer[np.maximum(best[rows], 0)])
    keep = clears & in_best_layer
    order = np.lexsort((-values[keep], rows[keep]))
    kept_rows, kept_cols = rows[keep][order], cols[keep][order]
    bounds = np.searchsorted(kept_rows, np.arange(n_rows + 1))
    return best, best_value, [kept_cols[bounds[r]:bounds[r + 1]] for r in range(n_rows)]


def categories(similarity: sparse.coo_matrix, concepts_a: Concepts, concepts_b: Concepts,
               thresholds: np.ndarray) -> dict[str, dict]:
    """Both runs' concepts labelled: for "a" and "b", `best` (the other run's most similar concept, −1: none),
    `similarity`, `matches` (the concepts it matches) and `category` (SHARED, SPLIT, MERGED or UNIQUE)."""
    similarity = similarity.tocoo()
    sides = {"a": _matched(similarity, concepts_a.layer, concepts_b.layer, thresholds, len(concepts_a)),
             "b": _matched(similarity.T.tocoo(), concepts_b.layer, concepts_a.layer, thresholds.T, len(concepts_b))}
    found = {}
    for side, other in (("a", "b"), ("b", "a")):
        best, value, matches = sides[side]
        their_matches = sides[other][2]
        category = np.array([UNIQUE if len(m) == 0 else SPLIT if len(m) > 1
                             else MERGED if len(their_matches[m[0]]) > 1 else SHARED for m in matches])
        found[side] = {"best": best, "similarity": value, "matches": matches, "category": category}
    return found
