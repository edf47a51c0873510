"""Spatial co-activation: do two neurons with shared top images fire at the same place?

Reads verified similar pairs and each neuron's top images; runs the model on a sample of each
pair's shared top images and keeps, per pair, the share of those images on which both neurons
are active at overlapping positions. A neuron is active where its map reaches `active` × its
maximum on that image; two neurons are co-active when the Jaccard overlap of their active
position sets is ≥ `overlap` (exact sets, so no per-neuron random permutations as the original
used). Maps of different sizes are compared on the coarser grid (max-pooled).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from neurocarto.inputs.capture import LayerCapture
from neurocarto.neurons import Layer, neuron_offsets


def shared_image_sample(top_images: np.ndarray, first: np.ndarray, second: np.ndarray, sample: int,
                        seed: int, chunk: int = 2 ** 15) -> tuple[np.ndarray, np.ndarray]:
    """(pair index, image id) tasks: up to `sample` shared top images per pair (a seeded uniform choice),
    pair by pair, each pair's images in increasing order."""
    rng = np.random.default_rng(seed)
    task_pairs, task_images = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for start in range(0, len(first), chunk):
        images = top_images[first[start:start + chunk]].astype(np.int64)
        shared = (images[:, :, None] == top_images[second[start:start + chunk]][:, None, :]).any(axis=2)
        keys = np.where(shared, rng.random(shared.shape), np.inf)
        order = np.argsort(keys, axis=1)[:, :sample]
        picked = np.take_along_axis(images, order, axis=1)
        valid = np.isfinite(np.take_along_axis(keys, order, axis=1))
        picked = np.sort(np.where(valid, picked, np.iinfo(np.int64).max), axis=1)
        rows, columns = np.nonzero(np.sort(valid, axis=1)[:, ::-1])
        task_pairs.append(start + rows)
        task_images.append(picked[rows, columns])
    return np.concatenate(task_pairs), np.concatenate(task_images)


def _active(maps: torch.Tensor, active: float) -> torch.Tensor:
    """(tasks, H, W) maps → bool masks of positions at ≥ active × each map's (positive) maximum."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)[:, None, None]
    return maps >= active * peak


def _on_grid(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(masks.shape[-2:]) == size:
        return masks
    return F.adaptive_max_pool2d(masks[:, None].float(), size)[:, 0] > 0


def coactivation_rates(model: nn.Module, layers: list[Layer], load_images: Callable[[np.ndarray], torch.Tensor],
                       top_images: np.ndarray, first: np.ndarray, second: np.ndarray, sample: int = 8,
                       active: float = 0.5, overlap: float = 0.5, batch_size: int = 64,
                       device: torch.device | str = "cpu", seed: int = 0) -> np.ndarray:
    """Per pair (first[p], second[p]) of flat neuron indices: share of sampled shared images co-active."""
    rates = np.zeros(len(first), dtype=np.float32)
    task_pairs, task_images = shared_image_sample(top_images, first, second, sample, seed)
    if len(task_pairs) == 0:
        return rates
    offsets = np.array(neuron_offsets(layers) + [sum(layer.channels for layer in layers)])
    layer_of = np.searchsorted(offsets, np.arange(offsets[-1]), side="right") - 1
    neuron_a, neuron_b = first[task_pairs], second[task_pairs]
    needed_layers = sorted(set(layer_of[neuron_a].tolist()) | set(layer_of[neuron_b].tolist()))
    captured: dict[int, torch.Tensor] = {}
    capture = LayerCapture(model, layers, lambda index, maps: captured.__setitem__(index, maps.detach().float().clone()),
                           needed_layers)
    coactive = np.zeros(len(task_pairs), dtype=bool)
    images = np.unique(task_images)
    with capture, torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch_images = images[start:start + batch_size]
            model(load_images(batch_images).to(device))
            in_batch = np.nonzero(np.isin(task_images, batch_images))[0]
            rows = torch.from_numpy(np.searchsorted(batch_images, task_images[in_batch])).to(device)
            layer_a, layer_b = layer_of[neuron_a[in_batch]], layer_of[neuron_b[in_batch]]
            for la, lb in set(zip(layer_a.tolist(), layer_b.tolist())):
                chosen = np.nonzero((layer_a == la) & (layer_b == lb))[0]
                channel_a = torch.from_numpy(neuron_a[in_batch][chosen] - offsets[la]).to(device)
                channel_b = torch.from_numpy(neuron_b[in_batch][chosen] - offsets[lb]).to(device)
                masks_a = _active(captured[la][rows[chosen], channel_a], active)
                masks_b = _active(captured[lb][rows[chosen], channel_b], active)
                grid = (min(masks_a.shape[-2], masks_b.shape[-2]), min(masks_a.shape[-1], masks_b.shape[-1]))
                masks_a, masks_b = _on_grid(masks_a, grid), _on_grid(masks_b, grid)
                both = (masks_a & masks_b).flatten(1).sum(1)
                either = (masks_a | masks_b).flatten(1).sum(1).clamp_min(1)
                coactive[in_batch[chosen]] = ((both / either) >= overlap).cpu().numpy()
    counts = np.bincount(task_pairs, minlength=len(first))
    hits = np.bincount(task_pairs, weights=coactive, minlength=len(first))
    np.divide(hits, counts, out=rates, where=counts > 0, casting="unsafe")
    return rates
