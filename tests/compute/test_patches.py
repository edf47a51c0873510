"""Patches: crops contain the argmax, sizes as documented, receptive fields grow with depth."""
import io

import numpy as np
import torch
from PIL import Image

from neurocarto.compute.patches import crop_box, display_image, neuron_patches, receptive_fields
from neurocarto.inputs.models import load_model, resolve_layers
from neurocarto.neurons import Layer
from neurocarto.store.patch_images import mosaic, pack, unpack


def test_crop_contains_the_argmax_and_stays_inside():
    layer = Layer("l", 4, 7, 7)
    for position in range(49):
        y, x = divmod(position, 7)
        box = crop_box(position, layer, (11, 11), (28, 28), min_size=8)
        center_y, center_x = (y + 0.5) * 4, (x + 0.5) * 4
        assert box.contains(center_y, center_x)
        assert box.height == box.width == 11
        assert 0 <= box.top and box.top + box.height <= 28 and 0 <= box.left and box.left + box.width <= 28
    assert crop_box(0, layer, (3, 3), (28, 28), min_size=16).height == 16   # at least the minimum
    assert crop_box(0, layer, (99, 99), (28, 28), min_size=16).height == 28  # at most the image


def test_receptive_fields_of_the_default_model():
    loaded = load_model(None)
    example = torch.zeros(1, 1, 28, 28)
    layers = resolve_layers(loaded, None, example)
    fields = dict(zip([layer.name for layer in layers], receptive_fields(loaded.module, layers, example)))
    # conv1 3×3, pool 2, conv2 3×3 → 8 pixels; deeper layers see more
    assert fields["conv2"] == (8, 8)
    assert fields["mixed3a"][0] > fields["conv2"][0] and fields["mixed4b"][0] >= fields["mixed4a"][0]


def test_neuron_patches_are_pngs_in_rank_order():
    images = torch.zeros(5, 1, 28, 28)
    for i in range(5):
        images[i, 0, :, :] = i / 4.0                 # image i is uniformly grey level i/4
    layers = [Layer("l", 2, 7, 7)]
    top_images = np.array([[4, 2, 0], [1, 3, 0]])
    top_positions = np.array([[0, 24, 48], [10, 10, 10]])
    collected = {}
    neuron_patches(layers, top_images, top_positions, lambda ids: images[torch.from_numpy(ids)], None, [(9, 9)],
                   per_neuron=2, size=32, min_size=4, images_per_chunk=2,
                   on_neuron=lambda neuron, pngs: collected.__setitem__(neuron, pngs))
    assert sorted(collected) == [0, 1] and all(len(p) == 2 for p in collected.values())
    first = np.asarray(Image.open(io.BytesIO(collected[0][0])))
    assert first.shape == (32, 32)                    # one input channel: a grey (mode L) PNG
    # min–max scaling of a uniform crop is black; the order is still the rank order
    levels = [np.asarray(Image.open(io.BytesIO(p))).mean() for p in collected[1]]
    assert levels[0] == levels[1]
    assert Image.open(io.BytesIO(mosaic([collected[0], collected[1]], per_member=2))).size == (64, 64)


def test_display_image_undoes_normalisation():
    tensor = (torch.full((3, 2, 2), 0.5) - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / \
        torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    pixels = display_image(tensor, (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])))
    assert pixels.shape == (2, 2, 3) and np.all(np.abs(pixels.astype(int) - 128) <= 1)
    gray = display_image(torch.tensor([[[0.0, 1.0], [0.25, 0.5]]]), (np.array([0.0]), np.array([1.0])))
    assert gray.shape == (2, 2) and gray.tolist() == [[0, 255], [64, 128]]     # one channel stays one (PNG mode L)


def test_pack_round_trip():
    blobs = [b"", b"\x89PNG abc", bytes(range(256)) * 3]
    assert unpack(pack(blobs)) == blobs
    assert unpack(pack([])) == []
