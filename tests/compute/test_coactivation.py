"""Spatial co-activation on maps whose active places are known."""
import numpy as np
import torch
from torch import nn

from neurocarto.compute.coactivation import coactivation_rates, shared_image_sample
from neurocarto.neurons import Layer


def designed_images(n_images: int = 6) -> torch.Tensor:
    """Channels 0 and 1 peak in the top-left corner, channel 2 bottom-right, channel 3 top-left
    on even images only (bottom-right on odd ones)."""
    images = torch.zeros(n_images, 4, 8, 8)
    images[:, 0, :2, :2] = 1.0
    images[:, 1, :2, :3] = 2.0
    images[:, 2, 6:, 6:] = 1.0
    images[0::2, 3, :2, :2] = 1.0
    images[1::2, 3, 6:, 6:] = 1.0
    return images


def test_rates_count_images_where_active_places_overlap():
    images = designed_images()
    model = nn.Sequential(nn.Identity(), nn.MaxPool2d(2))
    layers = [Layer("0", 4, 8, 8), Layer("1", 4, 4, 4)]
    top_images = np.tile(np.arange(6), (8, 1))          # every neuron shares all six images
    first, second = np.array([0, 0, 0, 0, 2]), np.array([1, 2, 3, 4, 6])
    rates = coactivation_rates(model, layers, lambda ids: images[torch.from_numpy(ids)], top_images, first, second,
                               sample=6, batch_size=4)
    # 0–1 same place; 0–2 never; 0–3 on half the images; 0 vs its own pooled copy (layer 1) always;
    # 2 vs pooled channel 2 always
    np.testing.assert_allclose(rates, [1.0, 0.0, 0.5, 1.0, 1.0])


def test_shared_sample_is_seeded_and_bounded():
    top_images = np.array([[1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6, 7], [10, 11, 12, 13, 14, 15]])
    pairs, images = shared_image_sample(top_images, np.array([0, 0]), np.array([1, 2]), sample=3, seed=0)
    assert pairs.tolist() == [0, 0, 0] and set(images) <= {2, 3, 4, 5, 6}
    again = shared_image_sample(top_images, np.array([0, 0]), np.array([1, 2]), sample=3, seed=0)
    assert again[1].tolist() == images.tolist()


def test_shared_sample_equals_the_intersection_or_a_uniform_subset_of_it():
    rng = np.random.default_rng(3)
    top_images = np.stack([rng.choice(30, 8, replace=False) for _ in range(40)])
    first, second = rng.integers(0, 40, 500), rng.integers(0, 40, 500)
    pairs, images = shared_image_sample(top_images, first, second, sample=3, seed=1, chunk=64)
    assert np.all(np.diff(pairs) >= 0)
    for pair, (i, j) in enumerate(zip(first, second)):
        shared, got = np.intersect1d(top_images[i], top_images[j]), images[pairs == pair]
        assert got.tolist() == sorted(got.tolist()) and set(got) <= set(shared)
        assert len(got) == min(len(shared), 3)
    same = np.tile(np.arange(6), (1, 1))
    _, picked = shared_image_sample(same, np.zeros(4000, dtype=np.int64), np.zeros(4000, dtype=np.int64), 3, seed=2)
    assert np.allclose(np.bincount(picked) / 4000, 0.5, atol=0.04)
