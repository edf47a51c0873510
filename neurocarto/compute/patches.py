"""Example patches: each neuron's top images cropped around where it fired.

Reads each neuron's top images and argmax positions (pass 1); gives per neuron its top
`per_neuron` patches as PNG bytes. A patch is the model's input view of the image (the
transform's normalisation undone) cropped to the neuron's receptive field — measured by the
gradient of one unit of the layer with respect to the input — centred on the argmax
position, at least `min_size` input pixels wide, shifted to stay inside the image, and
resized to `size` pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from neurocarto.inputs.capture import LayerCapture
from neurocarto.neurons import Layer, neuron_layers
from neurocarto.store.patch_images import encode_png


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    height: int
    width: int

    def contains(self, y: float, x: float) -> bool:
        return self.top <= y < self.top + self.height and self.left <= x < self.left + self.width


def receptive_fields(model: nn.Module, layers: list[Layer], example: torch.Tensor) -> list[tuple[int, int]]:
    """(height, width) in input pixels that one central unit of each layer depends on (one forward pass, a
    backward pass per layer)."""
    captured = {}
    image = (torch.randn_like(example) * 0.1 + example).requires_grad_(True)
    sizes = []
    with LayerCapture(model, layers, captured.__setitem__, isolate=True), torch.enable_grad():
        model(image)
        for index in range(len(layers)):
            feature = captured[index]
            (grad,) = torch.autograd.grad(feature[0, :, feature.shape[2] // 2, feature.shape[3] // 2].sum(), image,
                                          retain_graph=True, allow_unused=True)
            touched = (grad[0].abs().sum(0) > 0).nonzero() if grad is not None else torch.empty(0, 2)
            if len(touched) == 0:
                sizes.append((example.shape[2], example.shape[3]))
            else:
                sizes.append((int(touched[:, 0].max() - touched[:, 0].min() + 1),
                              int(touched[:, 1].max() - touched[:, 1].min() + 1)))
    return sizes


def crop_box(position: int, layer: Layer, field: tuple[int, int], image_size: tuple[int, int], min_size: int) -> Box:
    """Input-pixel box around flat argmax `position` of a layer's map, clipped into the image."""
    image_height, image_width = image_size
    y, x = divmod(int(position), layer.width)
    center_y = (y + 0.5) * image_height / layer.height
    center_x = (x + 0.5) * image_width / layer.width
    height = min(image_height, max(field[0], min_size))
    width = min(image_width, max(field[1], min_size))
    top = int(round(min(max(center_y - height / 2, 0), image_height - height)))
    left = int(round(min(max(center_x - width / 2, 0), image_width - width)))
    return Box(top, left, height, width)


def normalisation_of(transform) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) of a transform's Normalize step, where it has one."""
    steps = getattr(transform, "transforms", [transform])
    for step in steps:
        if hasattr(step, "mean") and hasattr(step, "std"):
            return np.asarray(step.mean, dtype=np.float32), np.asarray(step.std, dtype=np.float32)
    return None


def display_image(tensor: torch.Tensor, normalisation: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """(C, H, W) model input → uint8 (H, W) for one channel, else (H, W, 3); normalisation undone (else min–max
    scaled)."""
    array = tensor.detach().float().cpu().numpy()
    if normalisation is not None:
        mean, std = normalisation
        array = array * std.reshape(-1, 1, 1) + mean.reshape(-1, 1, 1)
    else:
        low, high = array.min(), array.max()
        array = (array - low) / max(high - low, 1e-6)
    pixels = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else pixels[:3].transpose(1, 2, 0)


def neuron_patches(layers: list[Layer], top_images: np.ndarray, top_positions: np.ndarray,
                   load_images: Callable[[np.ndarray], torch.Tensor], transform, fields: list[tuple[int, int]],
                   per_neuron: int = 20, size: int = 64, min_size: int = 16, images_per_chunk: int = 256,
                   on_neuron: Callable[[int, list[bytes]], None] | None = None) -> dict[int, list[bytes]] | None:
    """PNG patches of every neuron's top `per_neuron` images, in rank order.

    With `on_neuron`, each neuron's list is handed over as soon as it is complete (and nothing is
    returned), so memory holds at most one chunk of images.
    """
    normalisation = normalisation_of(transform)
    n_neurons = top_images.shape[0]
    count = min(per_neuron, top_images.shape[1])
    layer_of = neuron_layers(layers)
    tasks_image = top_images[:, :count].reshape(-1)
    order = np.argsort(tasks_image, kind="stable")
    sorted_images = tasks_image[order]
    patches: dict[int, list[bytes | None]] = {n: [None] * count for n in range(n_neurons)}
    remaining = np.full(n_neurons, count)
    images = np.unique(tasks_image)
    for start in range(0, len(images), images_per_chunk):
        chunk = images[start:start + images_per_chunk]
        tensors = load_images(chunk)
        lo = np.searchsorted(sorted_images, chunk[0], side="left")
        hi = np.searchsorted(sorted_images, chunk[-1], side="right")
        for task in order[lo:hi]:
            neuron, rank = divmod(int(task), count)
            row = int(np.searchsorted(chunk, tasks_image[task]))
            layer_index = layer_of[neuron]
            image = tensors[row]
            box = crop_box(top_positions[neuron, rank], layers[layer_index], fields[layer_index],
                           (image.shape[1], image.shape[2]), min_size)
            crop = image[:, box.top:box.top + box.height, box.left:box.left + box.width]
            patch = Image.fromarray(display_image(crop, normalisation)).resize((size, size), Image.BICUBIC)
            patches[neuron][rank] = encode_png(patch)
            remaining[neuron] -= 1
            if on_neuron is not None and remaining[neuron] == 0:
                on_neuron(neuron, patches.pop(neuron))
    return None if on_neuron is not None else patches
