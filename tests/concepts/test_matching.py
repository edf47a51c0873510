"""Matching two runs: cross pairs (exact and LSH) against all pairs by brute force, the layer-pair null, best
partners, layer similarity, concept similarity and categories against direct computations."""
import itertools

import numpy as np
import pytest

from neurocarto.concepts import matching
from neurocarto.concepts.cluster import Banding


def brute_jaccard(sets_a, sets_b) -> np.ndarray:
    return np.array([[len(set(a) & set(b)) / len(set(a) | set(b)) for b in sets_b] for a in sets_a])


def planted_runs(n_images=400, k=12, concepts=30, per_concept=(3, 2), noise=40, seed=0):
    """Two runs whose neurons are noisy copies of shared planted concepts' image sets, plus neurons of their own;
    run B's neurons in the order and layers of its own."""
    rng = np.random.default_rng(seed)
    centres = [rng.choice(n_images, k, replace=False) for _ in range(concepts)]

    def neuron_of(centre):
        kept = rng.choice(centre, k - 3, replace=False)
        others = rng.choice(np.setdiff1d(np.arange(n_images), kept), 3, replace=False)
        return np.concatenate([kept, others])

    def run(copies, layer_count):
        sets = [neuron_of(centres[c]) for c in range(concepts) for _ in range(copies)]
        sets += [rng.choice(n_images, k, replace=False) for _ in range(noise)]
        order = rng.permutation(len(sets))
        return np.array(sets)[order], rng.integers(0, layer_count, len(sets))[order]

    (sets_a, layer_a), (sets_b, layer_b) = run(per_concept[0], 3), run(per_concept[1], 4)
    return sets_a, layer_a, sets_b, layer_b


@pytest.mark.parametrize("threshold", [0.2, 0.4])
def test_cross_pairs_exact_and_lsh_against_brute_force(threshold):
    sets_a, _, sets_b, _ = planted_runs()
    brute = brute_jaccard(sets_a, sets_b)
    want = {(a, b) for a, b in zip(*np.nonzero(brute >= threshold - 1e-6))}
    first, second, jaccard = matching.cross_pairs(sets_a, sets_b, threshold, exact=True)
    assert set(zip(first.tolist(), second.tolist())) == want
    np.testing.assert_allclose(jaccard, brute[first, second], rtol=1e-6)
    first, second, jaccard = matching.cross_pairs(sets_a, sets_b, threshold, exact=False, recall=0.999)
    found = set(zip(first.tolist(), second.tolist()))
    assert found <= want and len(found) >= 0.97 * len(want)
    np.testing.assert_allclose(jaccard, brute[first, second], rtol=1e-6)


def test_exact_pairs_block_by_block_between_runs_of_different_k(monkeypatch):
    rng = np.random.default_rng(3)
    sets_a = np.array([rng.choice(60, 6, replace=False) for _ in range(50)])
    sets_b = np.array([rng.choice(60, 9, replace=False) for _ in range(40)])
    brute = brute_jaccard(sets_a, sets_b)
    for dense_entries in (0, 10 ** 6):                              # sparse, and dense blocks
        monkeypatch.setattr(matching, "DENSE_ENTRIES", dense_entries)
        for threshold in (0.0, 0.1):                                # 0: every pair sharing an image
            first, second, jaccard = matching.exact_cross_pairs(sets_a, sets_b, threshold, block=7)
            want = np.argwhere((brute >= threshold - 1e-6) & (brute > 0))
            assert list(zip(first.tolist(), second.tolist())) == [tuple(p) for p in want]
            np.testing.assert_allclose(jaccard, brute[first, second], rtol=1e-6)


def test_lsh_only_where_its_banding_is_selective(monkeypatch):
    assert matching.selective_banding(0.3, 0.995).rows >= 2
    assert matching.selective_banding(0.05, 0.995) is None          # one row a band: every shared image a candidate
    assert matching.selective_banding(0.02, 0.995) is None          # no banding within the hashes
    sets_a, _, sets_b, _ = planted_runs()
    monkeypatch.setattr(matching, "EXACT_PAIRS", 0)                  # "large" runs
    low = matching.cross_pairs(sets_a, sets_b, 0.05)                 # exact, as no selective banding exists
    want = np.argwhere(brute_jaccard(sets_a, sets_b) >= 0.05 - 1e-6)
    assert list(zip(*low[:2])) == [tuple(p) for p in want]


def test_lsh_candidates_are_exactly_the_pairs_equal_on_a_band():
    sets_a, _, sets_b, _ = planted_runs(concepts=10, noise=10)
    banding = Banding(bands=6, rows=3)
    sig_a = matching.minhash_signatures(sets_a, banding.hashes)
    sig_b = matching.minhash_signatures(sets_b, banding.hashes)
    first, second = matching.lsh_cross_candidates(sig_a, sig_b, banding)
    want = sorted((a, b) for a, b in itertools.product(range(len(sets_a)), range(len(sets_b)))
                  if any((sig_a[a, s:s + 3] == sig_b[b, s:s + 3]).all() for s in range(0, 18, 3)))
    assert list(zip(first.tolist(), second.tolist())) == want


def test_layer_pair_null_leaves_each_neurons_partners_out_and_samples_large_layers():
    sets_a, layer_a, sets_b, layer_b = planted_runs()
    brute = brute_jaccard(sets_a, sets_b)
    quantiles, means = matching.layer_pair_null(sets_a, layer_a, sets_b, layer_b, rows=10 ** 6, columns=10 ** 6)
    for x, y in itertools.product(range(3), range(4)):
        block = brute[np.ix_(layer_a == x, layer_b == y)]
        kept = np.concatenate([np.sort(block, axis=1)[:, :-matching.PARTNERS].ravel(),
                               np.sort(block.T, axis=1)[:, :-matching.PARTNERS].ravel()])
        assert means[x, y] == pytest.approx(kept.mean(), rel=1e-5)
        assert quantiles[x, y] == pytest.approx(np.quantile(kept, matching.NULL_QUANTILE), rel=1e-5)
        assert quantiles[x, y] < np.quantile(block, 0.995)          # the planted counterparts are left out
    _, sampled = matching.layer_pair_null(sets_a, layer_a, sets_b, layer_b, rows=12, columns=30)
    np.testing.assert_allclose(sampled, means, atol=0.03)
    thresholds = matching.match_thresholds(quantiles, means, 0.05)
    np.testing.assert_allclose(thresholds, np.maximum(np.maximum(quantiles, 5 * means), 0.05))


def test_best_partners_and_layer_similarity_against_direct_computation():
    sets_a, layer_a, sets_b, layer_b = planted_runs()
    brute = brute_jaccard(sets_a, sets_b)
    first, second, jaccard = matching.cross_pairs(sets_a, sets_b, 0.0, exact=True)   # every pair sharing an image
    partner, best = matching.best_partners(len(sets_a), first, second, jaccard)
    seen = brute.max(axis=1) > 0
    np.testing.assert_array_equal(partner[seen], np.argmax(brute, axis=1)[seen])
    np.testing.assert_allclose(best, brute.max(axis=1), rtol=1e-6)
    assert (partner[~seen] == -1).all()
    similarity = matching.layer_similarity(first, second, jaccard, layer_a, layer_b)
    for x, y in itertools.product(range(3), range(4)):
        block = brute[np.ix_(layer_a == x, layer_b == y)]
        assert similarity[x, y] == pytest.approx((block.max(axis=1).mean() + block.max(axis=0).mean()) / 2, rel=1e-5)


def test_concepts_from_labels_split_by_layer_and_keep_lone_neurons():
    labels = np.array([0, 0, -1, 1, 0, 1, -1])
    layer_of = np.array([0, 0, 0, 1, 1, 1, 1])
    concepts = matching.Concepts.from_labels(labels, layer_of)
    groups = [concepts.members[concepts.offsets[c]:concepts.offsets[c + 1]].tolist() for c in range(len(concepts))]
    assert groups == [[0, 1], [2], [3, 5], [4], [6]]
    assert concepts.layer.tolist() == [0, 0, 1, 1, 1]
    assert concepts.of_neuron(7).tolist() == [0, 0, 1, 2, 3, 2, 4]


def test_concept_similarity_is_average_linkage_and_categories_follow_their_definition():
    sets_a, layer_a, sets_b, layer_b = planted_runs(seed=3)
    brute = brute_jaccard(sets_a, sets_b)
    rng = np.random.default_rng(0)
    labels_a, labels_b = rng.integers(-1, 12, len(sets_a)), rng.integers(-1, 12, len(sets_b))
    concepts_a = matching.Concepts.from_labels(labels_a, layer_a)
    concepts_b = matching.Concepts.from_labels(labels_b, layer_b)
    first, second, jaccard = matching.cross_pairs(sets_a, sets_b, 0.0, exact=True)
    similarity = matching.concept_similarity(concepts_a, concepts_b, len(sets_a), len(sets_b), first, second,
                                             jaccard).toarray()

    def members(concepts, c):
        return concepts.members[concepts.offsets[c]:concepts.offsets[c + 1]]

    direct = np.array([[brute[np.ix_(members(concepts_a, c), members(concepts_b, d))].mean()
                        for d in range(len(concepts_b))] for c in range(len(concepts_a))])
    np.testing.assert_allclose(similarity, direct, atol=1e-6)

    thresholds = np.full((3, 4), 0.3)
    found = matching.categories(matching.sparse.coo_matrix(similarity), concepts_a, concepts_b, thresholds)

    def matches_of(values, layers_mine, layers_theirs, c):
        best = int(np.argmax(values[c]))
        if values[c, best] <= 0:
            return set()
        return {d for d in range(values.shape[1]) if values[c, d] >= 0.3 and layers_theirs[d] == layers_theirs[best]}

    for side, values, mine, theirs in (("a", similarity, concepts_a, concepts_b),
                                       ("b", similarity.T, concepts_b, concepts_a)):
        other_values = similarity.T if side == "a" else similarity
        for c in range(len(mine)):
            want = matches_of(values, mine.layer, theirs.layer, c)
            assert set(found[side]["matches"][c].tolist()) == want
            if not want:
                category = "unique"
            elif len(want) > 1:
                category = "split"
            else:
                back = matches_of(other_values, theirs.layer, mine.layer, next(iter(want)))
                category = "merged" if len(back) > 1 else "shared"
            assert found[side]["category"][c] == category
    assert {"shared", "unique"} <= set(found["a"]["category"])
