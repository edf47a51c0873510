"""One image on the summary: percentiles against the exact share of images, node values, the image's path."""
import numpy as np

from neurocarto.concepts.lit_graph import image_path, neuron_percentiles, node_values


def test_percentiles_are_exact_in_the_top_k_and_estimated_below():
    rng = np.random.default_rng(0)
    n_images, neurons, k = 500, 6, 20
    all_maxima = rng.gamma(2.0, size=(n_images, neurons)).round(2)          # ties included
    top_values = -np.sort(-all_maxima, axis=0)[:k].T
    sample = all_maxima[::2]
    for image in range(0, n_images, 7):
        maxima = all_maxima[image]
        got = neuron_percentiles(maxima, sample, top_values, n_images)
        exact = (all_maxima <= maxima).mean(axis=0)
        in_top = maxima >= top_values[:, -1]
        np.testing.assert_allclose(got[in_top], exact[in_top])
        assert np.all(np.abs(got[~in_top] - exact[~in_top]) < 4 * np.sqrt(0.25 / len(sample)))   # sampling error
        assert np.all(got[~in_top] <= 1 - k / n_images)
        np.testing.assert_allclose(neuron_percentiles(maxima, all_maxima, top_values, n_images), exact)
    outside = neuron_percentiles(np.full(neurons, 1e9), sample, top_values, n_images)
    assert np.all(outside == 1.0)
    assert np.all(neuron_percentiles(np.full(neurons, -1.0), sample, top_values, n_images) == 0.0)


GRAPH = {
    "nodes": [{"id": "a:0", "layer_index": 0, "members": [0]}, {"id": "a:c1", "layer_index": 0, "members": [1, 2]},
              {"id": "b:0", "layer_index": 1, "members": [3]}, {"id": "c:0", "layer_index": 2, "members": [4]},
              {"id": "c:1", "layer_index": 2, "members": [5]}],
    "edges": [{"source": "a:0", "target": "b:0", "weight": 2.0}, {"source": "a:c1", "target": "b:0", "weight": 1.0},
              {"source": "b:0", "target": "c:0", "weight": 1.0}, {"source": "b:0", "target": "c:1", "weight": 1.0}],
}


def test_node_values_are_their_members_mean():
    values = node_values(GRAPH, np.array([0.1, 0.2, 0.6, 0.5, 0.9, 0.3]))
    assert values == {"a:0": 0.1, "a:c1": 0.4, "b:0": 0.5, "c:0": 0.9, "c:1": 0.3}


def test_the_path_starts_at_the_most_lit_top_node_and_follows_weight_times_value():
    values = node_values(GRAPH, np.array([0.1, 0.2, 0.6, 0.5, 0.9, 0.3]))
    # into b:0: a:0 gives 2.0 × 0.1 = 0.2, a:c1 gives 1.0 × 0.4 = 0.4 — the image's own activation decides
    assert image_path(GRAPH, values) == (["c:0", "b:0", "a:c1"], [("b:0", "c:0"), ("a:c1", "b:0")])
    dark = dict(values, **{"b:0": 0.0})
    assert image_path(GRAPH, dark) == (["c:0"], [])                        # an unlit source ends the path
    assert image_path({"nodes": [], "edges": []}, {}) == ([], [])
