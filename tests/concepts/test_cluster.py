"""MinHash + LSH and grouping against exact references and planted structure."""
import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from sklearn.metrics import adjusted_rand_score

from neurocarto.concepts import hierarchy
from neurocarto.concepts.cluster import (
    Banding,
    exact_similar_pairs,
    lsh_candidates,
    minhash_signatures,
    pair_jaccard,
    similar_pairs,
)
from neurocarto.concepts.hierarchy import cut_labels, linkage_merges, merge_groups, null_cuts, within_group_means


def planted_sets(n_groups: int, group_size: int, n_singletons: int, k: int = 100, keep: int = 80,
                 n_images: int = 1_280_000, seed: int = 0):
    """Groups whose members keep `keep` of a shared core of k images; singletons are random."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for group in range(n_groups):
        core = rng.choice(n_images, k, replace=False)
        for _ in range(group_size):
            kept = rng.choice(core, keep, replace=False)
            others = rng.choice(n_images, 2 * k, replace=False)
            extra = others[~np.isin(others, core)][: k - keep]
            rows.append(np.concatenate([kept, extra]))
            labels.append(group)
    for _ in range(n_singletons):
        rows.append(rng.choice(n_images, k, replace=False))
        labels.append(-1)
    order = rng.permutation(len(rows))
    return np.array(rows, dtype=np.int64)[order], np.array(labels)[order]


def test_signatures_equal_datasketch():
    sets, _ = planted_sets(3, 4, 10, k=30, keep=20)
    signatures = minhash_signatures(sets, 16, seed=7)
    for row, signature in zip(sets, signatures):
        reference = MinHash(num_perm=16, seed=7, hashfunc=int)
        reference.update_batch(row.tolist())
        np.testing.assert_array_equal(signature, reference.hashvalues)


def test_candidates_equal_datasketch_lsh():
    sets, _ = planted_sets(10, 5, 200, k=40, keep=25, n_images=5000)
    banding = Banding.for_threshold(0.3, max_hashes=64)
    signatures = minhash_signatures(sets, banding.hashes, seed=1)
    first, second = lsh_candidates(signatures, banding)
    ours = set(zip(first.tolist(), second.tolist()))
    lsh = MinHashLSH(num_perm=banding.hashes, params=(banding.bands, banding.rows))
    sketches = []
    for i, row in enumerate(sets):
        sketch = MinHash(num_perm=banding.hashes, seed=1, hashfunc=int)
        sketch.update_batch(row.tolist())
        lsh.insert(i, sketch)
        sketches.append(sketch)
    theirs = {(min(i, j), max(i, j)) for i, sketch in enumerate(sketches) for j in lsh.query(sketch) if i != j}
    assert ours == theirs and len(ours) > 10


def test_banding_s_curve():
    banding = Banding.for_threshold(0.3, recall=0.97, max_hashes=128)
    assert banding.hashes <= 128
    assert banding.candidate_probability(0.3) >= 0.97
    assert banding.candidate_probability(0.05) < 0.2
    with pytest.raises(ValueError):
        Banding.for_threshold(0.01, recall=0.999, max_hashes=4)


def test_exact_pairs_match_a_python_loop():
    rng = np.random.default_rng(1)
    sets = np.array([rng.choice(30, 8, replace=False) for _ in range(40)])
    groups = rng.integers(0, 2, 40)
    first, second, jaccard = exact_similar_pairs(sets, 0.25, groups)
    expected = []
    for i in range(40):
        for j in range(i + 1, 40):
            shared = len(set(sets[i]) & set(sets[j]))
            if groups[i] == groups[j] and shared / (16 - shared) >= 0.25:
                expected.append((i, j, shared / (16 - shared)))
    assert list(zip(first.tolist(), second.tolist())) == [(i, j) for i, j, _ in expected]
    np.testing.assert_allclose(jaccard, [s for *_, s in expected], rtol=1e-6)
    np.testing.assert_allclose(pair_jaccard(sets, first, second), jaccard, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_lsh_recall_against_exact_all_pairs(seed):
    sets, _ = planted_sets(60, 6, 3000, seed=seed, keep=72)   # member pairs near J = 0.3
    rng = np.random.default_rng(seed)
    # also pairs spread over the whole similarity range near the threshold
    for i in range(200):
        overlap = int(rng.integers(40, 80))
        sets[i, :overlap] = sets[i + 200, :overlap]
    groups = np.zeros(len(sets), dtype=np.int64)
    first, second, jaccard, candidates = similar_pairs(sets, 0.3, groups)
    exact_first, exact_second, _ = exact_similar_pairs(sets, 0.3)
    exact = set(zip(exact_first.tolist(), exact_second.tolist()))
    found = set(zip(first.tolist(), second.tolist()))
    recall = len(found & exact) / len(exact)
    print(f"recall {recall:.3f} of {len(exact)} pairs, {candidates} candidates for {len(sets)} neurons")
    assert found <= exact and recall >= 0.95 and len(exact) > 400


def test_candidate_count_grows_linearly():
    per_neuron = []
    for scale in (1, 2, 4):
        sets, _ = planted_sets(50 * scale, 5, 2000 * scale, seed=scale)
        banding = Banding.for_threshold(0.3)
        first, _ = lsh_candidates(minhash_signatures(sets, banding.hashes), banding)
        per_neuron.append(len(first) / len(sets))
    print("candidates per neuron", per_neuron)
    assert max(per_neuron) / min(per_neuron) < 1.3


def test_groups_stay_within_their_layer():
    sets, _ = planted_sets(5, 4, 0, seed=3)
    groups = np.arange(len(sets)) % 2
    first, second, _, _ = similar_pairs(sets, 0.3, groups)
    assert len(first) > 0 and np.all(groups[first] == groups[second])


def test_average_linkage_recovers_planted_groups():
    sets, labels = planted_sets(40, 6, 400, seed=5)
    first, second, jaccard, _ = similar_pairs(sets, 0.3)
    found = average_linkage(len(sets), first, second, jaccard, 0.3)
    truth = np.where(labels >= 0, labels, -1 - np.arange(len(labels)))
    ours = np.where(found >= 0, found, -1 - np.arange(len(found)))
    score = adjusted_rand_score(truth, ours)
    print(f"adjusted Rand index {score:.3f}")
    assert score >= 0.95


def test_average_linkage_does_not_merge_a_chain():
    # a0–a1–…–a9: only neighbours overlap (J = 0.5); ends and distant links share nothing
    n = 10
    first, second = np.arange(n - 1), np.arange(1, n)
    labels = average_linkage(n, first, second, np.full(n - 1, 0.5), 0.3)
    assert labels[0] != labels[-1] or labels[0] == -1
    sizes = np.bincount(labels[labels >= 0])
    assert sizes.max() <= 2
    # single linkage (plain union of buckets) would put all ten in one group
    assert len(set(labels.tolist())) >= n // 2


def test_average_linkage_merges_a_clique_and_counts_missing_pairs_as_zero():
    first, second = np.array([0, 0, 1, 2]), np.array([1, 2, 2, 3])
    similarity = np.array([0.9, 0.9, 0.9, 0.5])
    labels = average_linkage(4, first, second, similarity, 0.3)
    assert labels[0] == labels[1] == labels[2] and labels[3] == -1   # 3 joins at mean 0.5/3 < 0.3


def average_linkage(n: int, first, second, similarity, threshold: float) -> np.ndarray:
    """Labels at a cut of the merge order down to that cut."""
    return cut_labels(n, linkage_merges(n, first, second, similarity, threshold), threshold)


def brute_force_average_linkage(similarity: np.ndarray, threshold: float) -> list[frozenset]:
    """Average linkage on a dense matrix: merge the pair of groups with the highest mean similarity
    while it is ≥ threshold. O(n³), for small n."""
    groups = [[i] for i in range(len(similarity))]
    while True:
        best, pair = threshold, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                mean = similarity[np.ix_(groups[a], groups[b])].mean()
                if mean >= best:
                    best, pair = mean, (a, b)
        if pair is None:
            return sorted(frozenset(g) for g in groups if len(g) > 1)
        a, b = pair
        groups[a] += groups.pop(b)


def partition(labels: np.ndarray) -> list[frozenset]:
    return sorted(frozenset(np.flatnonzero(labels == label).tolist()) for label in np.unique(labels[labels >= 0]))


def random_graph(n: int, density: float, seed: int):
    rng = np.random.default_rng(seed)
    first, second = np.triu_indices(n, k=1)
    keep = rng.random(len(first)) < density
    first, second = first[keep], second[keep]
    similarity = rng.uniform(0.05, 0.9, len(first))
    dense = np.zeros((n, n))
    dense[first, second] = dense[second, first] = similarity
    return first, second, similarity, dense


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dense_up_to", [4096, 3])       # 3: every component of more than 3 through the heap
def test_a_cut_of_the_merge_order_is_average_linkage_at_that_threshold(seed, dense_up_to, monkeypatch):
    monkeypatch.setattr(hierarchy, "DENSE_COMPONENT", dense_up_to)
    first, second, similarity, dense = random_graph(24, 0.3 if seed % 2 else 0.08, seed)
    merges = linkage_merges(24, first, second, similarity, floor=0.05)
    assert np.all(np.diff(merges[:, 2]) <= 1e-12)           # no inversions: similarities never increase
    for threshold in (0.05, 0.1, 0.2, 0.3, 0.5):
        assert partition(cut_labels(24, merges, threshold)) == brute_force_average_linkage(dense, threshold)


def test_merge_rows_name_items_and_earlier_groups():
    # two cliques {0,1,2} (0.9) and {3,4} (0.8), joined weakly by one pair (0.3)
    first, second = np.array([0, 0, 1, 3, 2]), np.array([1, 2, 2, 4, 3])
    similarity = np.array([0.9, 0.9, 0.9, 0.8, 0.3])
    merges = linkage_merges(5, first, second, similarity, floor=0.01)
    assert merges[:, 3].tolist() == [2, 3, 2, 5]                         # sizes
    assert set(merges[-1, :2].tolist()) == {5 + 1, 5 + 2}                # the last joins rows 1 and 2
    assert merges[-1, 2] == pytest.approx(0.3 / 6)                       # one pair of six counts
    assert partition(cut_labels(5, merges, 0.5)) == [frozenset({0, 1, 2}), frozenset({3, 4})]
    assert partition(cut_labels(5, merges, 0.01)) == [frozenset(range(5))]
    assert partition(cut_labels(5, merges, 0.01, max_sizes=3)) == [frozenset({0, 1, 2}), frozenset({3, 4})]
    assert (cut_labels(5, merges, 0.95) == -1).all()


def test_a_cut_per_group_is_each_group_cut_alone():
    first_a, second_a, similarity_a, _ = random_graph(12, 0.5, 1)
    first_b, second_b, similarity_b, _ = random_graph(12, 0.5, 2)
    first, second = np.r_[first_a, first_b + 12], np.r_[second_a, second_b + 12]
    merges = linkage_merges(24, first, second, np.r_[similarity_a, similarity_b], floor=0.05)
    groups = np.repeat([0, 1], 12)
    rows = merge_groups(24, merges, groups)
    labels = cut_labels(24, merges, np.array([0.2, 0.4])[rows])
    alone_a = cut_labels(12, linkage_merges(12, first_a, second_a, similarity_a, 0.05), 0.2)
    alone_b = cut_labels(12, linkage_merges(12, first_b, second_b, similarity_b, 0.05), 0.4)
    assert partition(labels[:12]) == partition(alone_a)
    assert [frozenset(i - 12 for i in g) for g in partition(np.where(groups == 1, labels, -1))] == partition(alone_b)


def test_null_cuts_are_the_quantile_of_cross_layer_pairs():
    rng = np.random.default_rng(0)
    sets = np.stack([rng.choice(60, 10, replace=False) for _ in range(9)])
    layer_of = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    cuts = null_cuts(sets, layer_of, layer_of, quantile=0.9, samples=10_000)
    for layer in range(3):
        inside, outside = np.flatnonzero(layer_of == layer), np.flatnonzero(layer_of != layer)
        reference = [len(np.intersect1d(sets[a], sets[b])) / len(np.union1d(sets[a], sets[b]))
                     for a in inside for b in outside]
        assert cuts[layer] == pytest.approx(np.quantile(reference, 0.9), abs=1e-6)
    one_layer = null_cuts(sets, np.zeros(9, dtype=int), np.zeros(9, dtype=int), quantile=0.5, samples=10_000)
    within = [len(np.intersect1d(sets[a], sets[b])) / len(np.union1d(sets[a], sets[b]))
              for a in range(9) for b in range(a + 1, 9)]
    assert one_layer[0] == pytest.approx(np.quantile(within, 0.5), abs=1e-6)


def test_within_group_means_are_the_mean_of_pairs_inside_each_layer():
    sets, _ = planted_sets(20, 5, 300, k=50, keep=40, n_images=3000, seed=5)
    layer_of = np.arange(len(sets)) % 3
    layer_of[-1] = 3                            # a layer of one neuron: no pair
    exact = within_group_means(sets, layer_of, samples=10 ** 6)
    for layer in range(3):
        inside = np.flatnonzero(layer_of == layer)
        reference = [len(np.intersect1d(sets[a], sets[b])) / len(np.union1d(sets[a], sets[b]))
                     for i, a in enumerate(inside) for b in inside[i + 1:]]
        assert exact[layer] == pytest.approx(np.mean(reference), rel=1e-5)
    assert exact[3] == 0
    np.testing.assert_allclose(within_group_means(sets, layer_of, samples=3000), exact, atol=0.01)


def test_null_cuts_sampled_match_the_exact_quantile():
    sets, _ = planted_sets(20, 5, 300, k=50, keep=40, n_images=3000, seed=4)
    layer_of = np.arange(len(sets)) % 4
    exact = null_cuts(sets, layer_of, layer_of, quantile=0.99, samples=10 ** 6)
    sampled = null_cuts(sets, layer_of, layer_of, quantile=0.99, samples=20_000)
    np.testing.assert_allclose(sampled, exact, atol=0.01)
