"""Two projections in one frame: the similarity transform against a known one, and the transferred places against
their definition."""
import numpy as np
import pytest

from neurocarto.concepts import alignment


def test_a_known_similarity_transform_is_recovered_exactly():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(40, 2))
    angle = 0.7
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]]) @ np.diag([1, -1])
    target = 2.5 * source @ rotation + np.array([3.0, -1.0])
    scale, found, shift = alignment.similarity_transform(source, target, rng.uniform(0.1, 1, 40))
    assert scale == pytest.approx(2.5) and np.allclose(found, rotation) and np.allclose(shift, [3.0, -1.0])
    moved = alignment.aligned(source, target, np.arange(40), np.arange(40), np.ones(40))
    np.testing.assert_allclose(moved, target, atol=1e-5)


def test_transferred_places_follow_their_definition():
    rng = np.random.default_rng(1)
    projection_a = rng.normal(size=(6, 2)).astype(np.float32)
    projection_b = rng.normal(size=(5, 2)).astype(np.float32)
    mine, theirs = np.array([0, 0, 1, 2, 3]), np.array([0, 1, 2, 3, 4])
    weights = np.array([0.6, 0.2, 0.5, 0.4, 0.3])
    neighbors = np.array([[1, 2], [0, 2], [0, 1], [2, 4], [3, 4]])       # neuron 4: placed through its neighbour 3
    places = alignment.transferred_projection(projection_b, projection_a, mine, theirs, weights, neighbors)
    own = alignment.aligned(projection_b, projection_a, mine, theirs, weights)
    mixed = lambda point, n: (1 - alignment.OWN_SHARE) * point + alignment.OWN_SHARE * own[n]
    np.testing.assert_allclose(places[0], mixed((0.6 * projection_a[0] + 0.2 * projection_a[1]) / 0.8, 0), atol=1e-5)
    np.testing.assert_allclose(places[1], mixed(projection_a[2], 1), atol=1e-5)
    np.testing.assert_allclose(places[4], mixed(projection_a[4], 4), atol=1e-5)     # neighbour 3's place
    alone = alignment.transferred_projection(projection_b, projection_a, mine[:2], theirs[:2], weights[:2], neighbors)
    np.testing.assert_allclose(alone, projection_b - projection_b.mean(axis=0) + projection_a.mean(axis=0), atol=1e-5)
