"""The concept hierarchy: average linkage over verified similar pairs, and its cuts.

Reads verified pairs with their Jaccard (`cluster.py`, after co-activation); gives the merge order
down to a floor and the clusters at any cut.
1. Average-linkage agglomeration (an absent pair counts 0), as a merge order down to a floor: two
   groups merge, most similar first, by the mean similarity over all their cross pairs, so a chain
   a–b–c–d of neighbor-only overlaps never joins its ends.
2. The clusters at a cut t are the groups of the merges with similarity ≥ t (`cut_labels`), one
   union-find pass; each layer's default cut comes from a null of cross-layer pairs (`null_cuts`) and
   must also clear a multiple of the mean of random pairs within the layer (`within_group_means`);
   a cut a user types is read by `parse_cut`.
"""
from __future__ import annotations

import heapq
import math

import numba
import numpy as np

from neurocarto.concepts.cluster import pair_jaccard
from neurocarto.errors import NeuroCartoError

DENSE_COMPONENT = 4096        # components up to this size are merged on a dense matrix (NN-chain, O(m²))

AUTO = "auto"               # the run's own cut: each layer's default from the cluster stage
MAX_CUT = 0.6               # the finest uniform cut offered


def parse_cut(text, floor: float) -> str | float:
    """A cut from a URL or a flag: "auto", or a Jaccard threshold in [floor, MAX_CUT] (rounded to 0.01)."""
    if text is None or str(text).strip().lower() == AUTO:
        return AUTO
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not floor <= value <= MAX_CUT:
        raise NeuroCartoError(f"cut must be “auto” or a Jaccard threshold from {floor:g} to {MAX_CUT:g}, not “{text}”")
    return round(value, 2)


def linkage_merges(n: int, first: np.ndarray, second: np.ndarray, similarity: np.ndarray,
                   floor: float) -> np.ndarray:
    """Average-linkage merge order on a sparse similarity graph, down to `floor`.

    Groups A, B merge, most similar first, while Σ sim(a, b) / (|A|·|B|) ≥ floor over all a ∈ A, b ∈ B,
    absent pairs counting 0. Returns rows (a, b, similarity, size) as float64, scipy's convention: ids
    below n are items, n + r is the group row r made. Average linkage has no inversions, so the
    similarities never increase down the rows, and the clusters at any cut t ≥ floor are the groups
    made by the rows with similarity ≥ t (`cut_labels`). Groups only form within connected components
    of the graph: each is merged on its own, by the nearest-neighbour chain on a dense matrix (same
    dendrogram as merging the most similar pair first, for a reducible linkage), or by a heap over the
    sparse pairs where it is larger than DENSE_COMPONENT.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    similarity = np.asarray(similarity, dtype=np.float64)
    loops = first != second
    first, second, similarity = first[loops], second[loops], similarity[loops]
    if len(first) == 0:
        return np.empty((0, 4), dtype=np.float64)
    _, component = connected_components(coo_matrix((np.ones(len(first)), (first, second)), shape=(n, n)),
                                        directed=False)
    nodes = np.unique(np.concatenate([first, second]))
    sizes = np.bincount(component[nodes], minlength=component.max() + 1)
    dense = sizes[component[first]] <= DENSE_COMPONENT
    by_node = nodes[np.argsort(component[nodes], kind="stable")]
    node_bounds = np.concatenate([[0], np.cumsum(sizes)])
    order = np.argsort(component[first][dense], kind="stable")
    pair_component = component[first][dense][order]
    pair_bounds = np.searchsorted(pair_component, np.arange(len(sizes) + 1))
    a, b, merged, size, created = _dense_linkage(
        by_node, node_bounds, sizes <= DENSE_COMPONENT, first[dense][order], second[dense][order],
        similarity[dense][order], pair_bounds, floor)
    if not dense.all():
        a_big, b_big, merged_big, size_big = _sparse_linkage(first[~dense], second[~dense], similarity[~dense], floor)
        offset = len(a)
        a = np.concatenate([a, np.where(a_big < 0, a_big - offset, a_big)])
        b = np.concatenate([b, np.where(b_big < 0, b_big - offset, b_big)])
        merged, size = np.concatenate([merged, merged_big]), np.concatenate([size, size_big])
        created = np.concatenate([created, np.arange(len(a_big)) + len(created)])
    rows = np.lexsort((created, -merged))            # children are made first, at no lower similarity
    position = np.empty(len(rows), dtype=np.int64)
    position[rows] = np.arange(len(rows))

    def named(ids: np.ndarray) -> np.ndarray:      # −(r + 1): the group made by unsorted row r
        return np.where(ids >= 0, ids, n + position[np.maximum(-ids - 1, 0)])

    return np.stack([named(a)[rows], named(b)[rows], merged[rows], size[rows]], axis=1).astype(np.float64)


@numba.njit(cache=True)
def _dense_linkage(by_node, node_bounds, small, first, second, similarity, pair_bounds, floor):
    """Per small component: its dense similarity matrix, then nearest-neighbour-chain average linkage.
    Merges below the floor are dropped (their ancestors are below it too). Returns a, b (item ids, or
    −(r + 1) for the group unsorted row r made), similarity, size, and each row's creation number.
    One numba kernel: the chain, the matrix update and the output rows share their arrays in nopython mode."""
    total = 0
    for c in range(len(small)):
        if small[c] and node_bounds[c + 1] > node_bounds[c]:
            total += node_bounds[c + 1] - node_bounds[c] - 1
    out_a = np.empty(total, dtype=np.int64)
    out_b = np.empty(total, dtype=np.int64)
    out_similarity = np.empty(total, dtype=np.float64)
    out_size = np.empty(total, dtype=np.float64)
    filled = 0
    for c in range(len(small)):
        if not small[c] or node_bounds[c + 1] == node_bounds[c]:
            continue
        members = by_node[node_bounds[c]:node_bounds[c + 1]]
        m = len(members)
        sim = np.zeros((m, m))
        for p in range(pair_bounds[c], pair_bounds[c + 1]):
            i = np.searchsorted(members, first[p])
            j = np.searchsorted(members, second[p])
            sim[i, j] += similarity[p]
            sim[j, i] += similarity[p]
        size = np.ones(m)
        active = np.ones(m, dtype=np.bool_)
        ident = members.copy()
        chain = np.empty(m, dtype=np.int64)
        top = 0
        for _ in range(m - 1):
            while True:
                if top == 0:
                    for slot in range(m):
                        if active[slot]:
                            chain[0] = slot
                            top = 1
                            break
                here = chain[top - 1]
                nearest, best = -1, -1.0
                if top >= 2:                   # on a tie the previous link wins: the chain ends
                    nearest, best = chain[top - 2], sim[here, chain[top - 2]]
                for other in range(m):
                    if active[other] and other != here and sim[here, other] > best:
                        nearest, best = other, sim[here, other]
                if top >= 2 and nearest == chain[top - 2]:
                    break
                chain[top] = nearest
                top += 1
            x, y = chain[top - 1], chain[top - 2]
            top -= 2
            if best >= floor:
                out_a[filled], out_b[filled] = ident[x], ident[y]
                out_similarity[filled], out_size[filled] = best, size[x] + size[y]
                filled += 1
                ident[x] = -filled
            else:
                ident[x] = -(1 << 62)       # below the floor: never a row; nothing above it is either
            for other in range(m):
                if active[other] and other != x and other != y:
                    value = (size[x] * sim[x, other] + size[y] * sim[y, other]) / (size[x] + size[y])
                    sim[x, other] = value
                    sim[other, x] = value
            active[y] = False
            size[x] += size[y]
    return (out_a[:filled], out_b[:filled], out_similarity[:filled], out_size[:filled],
            np.arange(filled, dtype=np.int64))


def _sparse_linkage(first: np.ndarray, second: np.ndarray, similarity: np.ndarray,
                    floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Most similar pair of groups first, by a heap over the sparse pairs (for large components).
    Same encoding as `_dense_linkage`; rows come out in merge order."""
    sums: dict[int, dict[int, float]] = {}
    for i, j, s in zip(first.tolist(), second.tolist(), similarity.tolist()):
        sums.setdefault(i, {})[j] = sums.setdefault(i, {}).get(j, 0.0) + s
        sums.setdefault(j, {})[i] = sums.setdefault(j, {}).get(i, 0.0) + s
    size = {node: 1 for node in sums}
    name = {node: node for node in sums}         # a group, keyed by one member, is named by its id
    version = {node: 0 for node in sums}
    heap = [(-s, i, j, 0, 0) for i in sums for j, s in sums[i].items() if i < j and s >= floor]
    heapq.heapify(heap)
    merges: list[tuple[int, int, float, int]] = []
    while heap:
        negative, a, b, version_a, version_b = heapq.heappop(heap)
        if a not in size or b not in size or version[a] != version_a or version[b] != version_b:
            continue
        if size[a] < size[b]:
            a, b = b, a
        merges.append((name[a], name.pop(b), -negative, size[a] + size[b]))
        name[a] = -len(merges)
        size[a] += size.pop(b)
        version[a] += 1
        neighbors_b = sums.pop(b)
        neighbors_b.pop(a, None)
        sums[a].pop(b, None)
        for c, s in neighbors_b.items():
            sums[a][c] = sums[a].get(c, 0.0) + s
            sums[c][a] = sums[c].get(a, 0.0) + s
            sums[c].pop(b, None)
        for c, s in sums[a].items():
            average = s / (size[a] * size[c])
            if average >= floor:
                heapq.heappush(heap, (-average, min(a, c), max(a, c), version[min(a, c)], version[max(a, c)]))
    rows = np.array(merges, dtype=np.float64).reshape(-1, 4)
    return rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2], rows[:, 3]


@numba.njit(cache=True)
def _cut(n, children, applied):
    parent = np.arange(n + len(applied))
    for row in range(len(applied)):
        if applied[row]:
            parent[children[row, 0]] = n + row
            parent[children[row, 1]] = n + row
    for node in range(n + len(applied) - 1, -1, -1):      # rows make higher ids: parents before children
        parent[node] = parent[parent[node]]
    return parent[:n]


def cut_labels(n: int, merges: np.ndarray, thresholds: np.ndarray | float,
               max_sizes: np.ndarray | float = np.inf) -> np.ndarray:
    """Cluster label per item (−1: alone) at a cut: the groups of the merges with similarity ≥ the
    threshold and size ≤ the cap (each one for all rows, or one per row). Both hold for a row's
    children when they hold for the row, so the applied rows are whole subtrees. Labels number
    clusters by their smallest member."""
    applied = ((merges[:, 2] >= np.asarray(thresholds, dtype=np.float64)) & (merges[:, 3] <= max_sizes)
               if len(merges) else np.zeros(0, dtype=bool))
    roots = _cut(n, merges[:, :2].astype(np.int64), applied)
    grouped = roots >= n
    labels = np.full(n, -1, dtype=np.int64)
    _, first_seen, inverse = np.unique(roots[grouped], return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(np.flatnonzero(grouped)[first_seen]))
    labels[grouped] = order[inverse]
    return labels


def merge_groups(n: int, merges: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The group (layer) of each merge row: the group of its first item."""
    first_item = np.empty(len(merges), dtype=np.int64)
    leaf = merges[:, 0].astype(np.int64)
    for row in range(len(merges)):
        first_item[row] = leaf[row] if leaf[row] < n else first_item[leaf[row] - n]
    return groups[first_item]


def null_cuts(sets: np.ndarray, layer_of: np.ndarray, groups: np.ndarray, quantile: float = 0.995,
              samples: int | None = None, seed: int = 1) -> np.ndarray:
    """Each group's cut, from a null of pairs that cannot be one detector: neurons of the group paired with
    neurons of other layers (if the model has one layer, pairs within it). The cut is the `quantile` of
    their Jaccard: a cluster's members overlap, on average, more than that share of such pairs do.
    `samples` pairs per group (default: 10⁵, fewer when there are over 200 groups), drawn with a fixed
    seed; all of them where there are fewer."""
    rng = np.random.default_rng(seed)
    n = len(layer_of)
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(int(groups.max()) + 2 if n else 1))
    samples = samples or max(5000, min(100_000, 20_000_000 // max(len(bounds) - 1, 1)))
    layer_sizes = np.bincount(layer_of)
    cuts = np.ones(len(bounds) - 1)
    for group in range(len(cuts)):
        inside = order[bounds[group]:bounds[group + 1]]
        if len(inside) == 0:
            continue
        layers = np.unique(layer_of[inside])
        outside_count = n - layer_sizes[layers[0]] if len(layers) == 1 else n
        if outside_count > 0 and len(inside) * outside_count <= samples:
            outside = np.flatnonzero(layer_of != layers[0]) if len(layers) == 1 else np.arange(n)
            first, second = np.repeat(inside, len(outside)), np.tile(outside, len(inside))
        elif outside_count > 0:
            first = rng.choice(inside, 2 * samples)
            second = rng.integers(0, n, 2 * samples)
        elif len(inside) >= 2:        # one layer: pairs within it
            if len(inside) * (len(inside) - 1) // 2 <= samples:
                a, b = np.triu_indices(len(inside), k=1)
                first, second = inside[a], inside[b]
            else:
                first, second = rng.choice(inside, 2 * samples), rng.choice(inside, 2 * samples)
        else:
            continue
        keep = (layer_of[first] != layer_of[second]) if outside_count > 0 else (first != second)
        first, second = first[keep][:samples], second[keep][:samples]
        if len(first):
            cuts[group] = float(np.quantile(pair_jaccard(sets, first, second), quantile))
    return cuts


def within_group_means(sets: np.ndarray, groups: np.ndarray, samples: int = 20_000, seed: int = 1) -> np.ndarray:
    """Each group's mean Jaccard of random pairs of its own neurons (every pair where there are at most
    `samples`, else `samples` drawn with a fixed seed); 0 for a group of one. A layer whose neurons share bright
    images has a high mean, which its cut must clear by a margin (`ClusterParams.mean_multiple`)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(int(groups.max()) + 2 if len(groups) else 1))
    means = np.zeros(len(bounds) - 1)
    for group in range(len(means)):
        inside = order[bounds[group]:bounds[group + 1]]
        if len(inside) < 2:
            continue
        if len(inside) * (len(inside) - 1) // 2 <= samples:
            a, b = np.triu_indices(len(inside), k=1)
        else:
            a, b = rng.integers(0, len(inside), (2, 2 * samples))
            a, b = a[a != b][:samples], b[a != b][:samples]
        means[group] = float(pair_jaccard(sets, inside[a], inside[b]).mean())
    return means
