"""Pass 1's pieces against brute-force references on small arrays."""
import numpy as np
import pytest
import torch
from torch import nn

from neurocarto.compute.pass1 import (
    SAMPLE_IMAGES,
    SUM_SCALE,
    ClassStatistics,
    MaximaSample,
    Pass1State,
    StreamingTopK,
    SummitThreshold,
    run_pass1,
    sample_every,
)
from neurocarto.neurons import Layer


def full_sort_top_k(values: np.ndarray, positions: np.ndarray, k: int):
    """Reference: per neuron, all images sorted by (value descending, image id ascending)."""
    n_images, n_neurons = values.shape
    images = np.empty((n_neurons, k), dtype=np.int64)
    for neuron in range(n_neurons):
        order = sorted(range(n_images), key=lambda i: (-values[i, neuron], i))[:k]
        images[neuron] = order
    return (np.take_along_axis(values.T, images, 1), images, np.take_along_axis(positions.T, images, 1))


@pytest.mark.parametrize("batch_size", [1, 7, 50, 200])
def test_streaming_top_k_equals_full_sort_with_ties(batch_size):
    rng = np.random.default_rng(batch_size)
    n_images, n_neurons, k = 157, 13, 10
    # few distinct values: many ties, across batch boundaries
    values = rng.integers(0, 6, size=(n_images, n_neurons)).astype(np.float32)
    positions = rng.integers(0, 49, size=(n_images, n_neurons))
    top = StreamingTopK(n_neurons, k)
    for start in range(0, n_images, batch_size):
        stop = min(start + batch_size, n_images)
        top.update(torch.from_numpy(values[start:stop]), torch.from_numpy(positions[start:stop]),
                   torch.arange(start, stop))
    expected_values, expected_images, expected_positions = full_sort_top_k(values, positions, k)
    state = top.state()
    np.testing.assert_array_equal(state["top_images"], expected_images)
    np.testing.assert_array_equal(state["top_values"], expected_values)
    np.testing.assert_array_equal(state["top_positions"], expected_positions)


def test_top_k_keeps_fewer_when_fewer_images_seen():
    top = StreamingTopK(3, 5)
    top.update(torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.5, 3.0]]), torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0, 1]))
    assert top.state()["top_images"].shape == (3, 2)
    np.testing.assert_array_equal(top.state()["top_images"], [[1, 0], [0, 1], [0, 1]])


def summit_reference(maxima: np.ndarray, threshold: float) -> np.ndarray:
    """Direct per-image loop of Summit's rule."""
    taken = np.zeros(maxima.shape, dtype=bool)
    for row, image_maxima in enumerate(maxima):
        positive = np.clip(image_maxima, 0, None)
        if positive.sum() == 0:
            continue
        shares = positive / positive.sum()
        cumulative = 0.0
        for channel in sorted(range(len(shares)), key=lambda c: (-shares[c], c)):
            if cumulative >= threshold:
                break
            taken[row, channel] = True
            cumulative += shares[channel]
    return taken


@pytest.mark.parametrize("candidates", [48, 4])   # 4: most (image, layer) need the full ordering
@pytest.mark.parametrize("threshold", [0.03, 0.2, 0.5, 1.0])
def test_summit_threshold_matches_direct_loop_per_layer(threshold, candidates):
    rng = np.random.default_rng(0)
    layers = [Layer("a", 40, 1, 1), Layer("b", 7, 1, 1), Layer("c", 25, 1, 1)]
    maxima = rng.exponential(size=(20, 72)).astype(np.float32)
    maxima[3] = 0            # a dead image takes nothing
    maxima[4, :5] = -1.0     # negative maxima never count
    maxima[5, 40:47] = 0     # a dead layer of one image
    maxima[6, 47:70] = 2.0   # ties: lower channel first
    maxima[6, 70:] = 3.3
    got = SummitThreshold(layers, threshold, candidates=candidates)(torch.from_numpy(maxima)).numpy()
    expected = np.concatenate([summit_reference(maxima[:, :40], threshold), summit_reference(maxima[:, 40:47], threshold),
                               summit_reference(maxima[:, 47:], threshold)], axis=1)
    np.testing.assert_array_equal(got, expected)


def test_summit_small_example_by_hand():
    summit = SummitThreshold([Layer("a", 4, 1, 1)], 0.5)
    maxima = torch.tensor([[5.0, 3.0, 2.0, 0.0]])   # shares 0.5, 0.3, 0.2, 0
    assert summit(maxima).tolist() == [[True, False, False, False]]
    summit.threshold = 0.6
    assert summit(maxima).tolist() == [[True, True, False, False]]
    summit.threshold = 0.03
    assert summit(maxima).tolist() == [[True, False, False, False]]


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Sequential(nn.Conv2d(4, 3, 3, stride=2), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.b(self.a(x)).mean((2, 3))


@pytest.mark.parametrize("n_images, k, batch_size", [(23, 5, 6), (300, 2, 10)])  # the 2nd: sparse argmax
def test_run_pass1_matches_brute_force_over_all_maps(n_images, k, batch_size):
    torch.manual_seed(0)
    model = TwoLayers().eval()
    layers = [Layer("a", 4, 8, 8), Layer("b", 3, 3, 3)]
    images = torch.randn(n_images, 1, 8, 8)
    labels = torch.randint(0, 3, (n_images,))
    threshold = 0.3
    state = Pass1State(StreamingTopK(7, k), ClassStatistics(3, 7), sample=MaximaSample(4, 7))
    batches = [(images[s:s + batch_size], labels[s:s + batch_size], torch.arange(s, min(s + batch_size, n_images)), [])
               for s in range(0, n_images, batch_size)]
    run_pass1(model, layers, batches, state, threshold, torch.device("cpu"))

    with torch.no_grad():
        map_a = model.a(images)
        map_b = model.b(map_a)
    maxima = torch.cat([map_a.flatten(2).amax(2), map_b.flatten(2).amax(2)], 1).numpy()
    positions = torch.cat([map_a.flatten(2).argmax(2), map_b.flatten(2).argmax(2)], 1).numpy()
    expected_values, expected_images, expected_positions = full_sort_top_k(maxima, positions, k)
    result = state.state()
    np.testing.assert_array_equal(result["top_images"], expected_images)
    np.testing.assert_allclose(result["top_values"], expected_values, rtol=1e-6)
    np.testing.assert_array_equal(result["top_positions"], expected_positions)
    taken = np.concatenate([summit_reference(maxima[:, :4], threshold), summit_reference(maxima[:, 4:], threshold)], 1)
    expected_counts = np.stack([taken[labels.numpy() == c].sum(0) for c in range(3)])
    np.testing.assert_array_equal(result["class_matrix"], expected_counts)
    expected_sums = np.stack([maxima[labels.numpy() == c].sum(0) for c in range(3)])
    np.testing.assert_allclose(result["class_maxima_sums"] / SUM_SCALE, expected_sums, rtol=1e-5, atol=1e-6)
    assert result["next_image"] == n_images
    np.testing.assert_array_equal(result["sample_images"], np.arange(0, n_images, 4))
    np.testing.assert_allclose(result["sample_maxima"], maxima[::4], rtol=1e-6)


def test_the_sample_spans_the_run_at_most_sample_images():
    assert sample_every(10) == 1 and sample_every(SAMPLE_IMAGES) == 1
    for n_images in (SAMPLE_IMAGES + 1, 70_000, 1_281_167):
        assert SAMPLE_IMAGES // 2 <= len(range(0, n_images, sample_every(n_images))) <= SAMPLE_IMAGES
