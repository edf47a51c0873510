"""MinHash + LSH and grouping against exact references and planted structure."""
import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from sklearn.metrics import adjusted_rand_score

from neurocarto.cluster import (Banding, average_linkage, exact_similar_pairs, lsh_candidates, minhash_signatures,
                                pair_jaccard, similar_pairs)


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
