"""Pass 1: one streaming pass over the images for all layers at once.

Reads a model, its layers and a DataLoader of (images, labels, image ids). Per image and
neuron it takes the spatial maximum of the layer's output and where it is, then keeps
- per neuron, its top-k images (value, image id, argmax position), merged batch by batch;
- the class × neuron matrix A (Summit): per image and layer, the channel maxima normalised to
  sum to 1, taken in descending order until their cumulative share reaches `threshold`, each
  taken channel counted for the image's class;
- per class, the sum of each neuron's maximum (→ the per-class mean).
Nothing of size images × neurons is kept: memory does not grow with the number of images.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .models import Layer


class StreamingTopK:
    """Per-neuron top-k of a stream of (value, image id, position), ties to the lower image id.

    Batches must come in increasing image-id order: then a stable descending sort of
    [kept entries, new batch] orders ties by image id, equal to one full sort of all values.
    """

    def __init__(self, n_neurons: int, k: int, device: torch.device | str = "cpu"):
        self.k = k
        self.values = torch.full((n_neurons, 0), float("-inf"), device=device)
        self.images = torch.zeros((n_neurons, 0), dtype=torch.int64, device=device)
        self.positions = torch.zeros((n_neurons, 0), dtype=torch.int32, device=device)

    def update(self, values: torch.Tensor, positions: torch.Tensor, image_ids: torch.Tensor) -> None:
        """values, positions: (batch, neurons); image_ids: (batch,), increasing."""
        n_neurons, batch = self.values.shape[0], values.shape[0]
        merged_values = torch.cat([self.values, values.t().float()], dim=1)
        merged_images = torch.cat([self.images, image_ids.to(self.images).expand(n_neurons, batch)], dim=1)
        merged_positions = torch.cat([self.positions, positions.t().to(torch.int32)], dim=1)
        order = torch.sort(merged_values, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = merged_values.gather(1, order)
        self.images = merged_images.gather(1, order)
        self.positions = merged_positions.gather(1, order)

    def state(self) -> dict[str, np.ndarray]:
        return {"top_values": self.values.cpu().numpy(), "top_images": self.images.cpu().numpy(),
                "top_positions": self.positions.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        device = self.values.device
        self.values = torch.from_numpy(state["top_values"]).to(device)
        self.images = torch.from_numpy(state["top_images"]).to(device)
        self.positions = torch.from_numpy(state["top_positions"]).to(device)


def summit_taken(maxima: torch.Tensor, threshold: float) -> torch.Tensor:
    """(batch, channels) maxima of one layer → bool mask of the channels A counts.

    Shares are the (non-negative) maxima over their sum; channels are taken in descending order
    while the share before them is below threshold, so the one that crosses it is taken too.
    """
    positive = maxima.float().clamp_min(0)
    total = positive.sum(dim=1, keepdim=True)
    shares = positive / total.clamp_min(torch.finfo(torch.float32).tiny)
    sorted_shares, order = torch.sort(shares, dim=1, descending=True, stable=True)
    before = torch.cumsum(sorted_shares, dim=1) - sorted_shares
    taken_sorted = (before < threshold) & (total > 0)
    return torch.zeros_like(taken_sorted).scatter(1, order, taken_sorted)


class ClassStatistics:
    """The class × neuron matrix A, per-class sums of neuron maxima, and images per class."""

    def __init__(self, n_classes: int, n_neurons: int, device: torch.device | str = "cpu"):
        self.counts = torch.zeros((n_classes, n_neurons), dtype=torch.int64, device=device)
        self.maxima_sums = torch.zeros((n_classes, n_neurons), dtype=torch.float64, device=device)
        self.images = torch.zeros(n_classes, dtype=torch.int64, device=device)

    def update(self, maxima: torch.Tensor, taken: torch.Tensor, labels: torch.Tensor) -> None:
        self.counts.index_add_(0, labels, taken.to(torch.int64))
        self.maxima_sums.index_add_(0, labels, maxima.to(torch.float64))
        self.images.index_add_(0, labels, torch.ones_like(labels))

    def state(self) -> dict[str, np.ndarray]:
        return {"class_matrix": self.counts.cpu().numpy(), "class_maxima_sums": self.maxima_sums.cpu().numpy(),
                "class_images": self.images.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        device = self.counts.device
        self.counts = torch.from_numpy(state["class_matrix"]).to(device)
        self.maxima_sums = torch.from_numpy(state["class_maxima_sums"]).to(device)
        self.images = torch.from_numpy(state["class_images"]).to(device)


class LayerMaxima:
    """Forward hooks that reduce each selected layer's output to per-channel max and argmax.

    The reduction happens inside the hook, so later in-place operations cannot alter it and no
    full feature map outlives its layer.
    """

    def __init__(self, model: nn.Module, layers: list[Layer]):
        modules = dict(model.named_modules())
        self.layers = layers
        self.maxima: dict[str, torch.Tensor] = {}
        self.positions: dict[str, torch.Tensor] = {}
        self._handles = [modules[layer.name].register_forward_hook(self._hook(layer.name)) for layer in layers]

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            self.maxima[name], self.positions[name] = output.detach().flatten(2).max(dim=2)
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@dataclass
class Pass1State:
    """Everything pass 1 accumulates; `state()` is what a checkpoint and the store hold."""

    top_k: StreamingTopK
    classes: ClassStatistics
    next_image: int = 0
    skipped: list[int] = field(default_factory=list)

    def state(self) -> dict[str, np.ndarray]:
        return {**self.top_k.state(), **self.classes.state(), "next_image": np.array(self.next_image),
                "skipped": np.array(self.skipped, dtype=np.int64)}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.top_k.load(state)
        self.classes.load(state)
        self.next_image = int(state["next_image"])
        self.skipped = state["skipped"].tolist()


def run_pass1(model: nn.Module, layers: list[Layer], batches, state: Pass1State, threshold: float,
              device: torch.device, amp: bool = False, on_batch=None) -> Pass1State:
    """Feed `batches` (yielding (images, labels, image_ids, skipped_ids)) through the model.

    `on_batch(state, n_images)` is called after each merged batch (progress, checkpoints).
    """
    recorder = LayerMaxima(model, layers)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16) \
        if amp else nullcontext()
    try:
        with torch.inference_mode(), autocast:
            for images, labels, image_ids, skipped_ids in batches:
                state.skipped.extend(skipped_ids)
                if len(image_ids):
                    images = images.to(device, non_blocking=True)
                    labels = labels.to(device, non_blocking=True)
                    model(images)
                    maxima = torch.cat([recorder.maxima[layer.name].float() for layer in layers], dim=1)
                    positions = torch.cat([recorder.positions[layer.name] for layer in layers], dim=1)
                    taken = torch.cat([summit_taken(recorder.maxima[layer.name], threshold) for layer in layers], dim=1)
                    state.top_k.update(maxima, positions, image_ids.to(device))
                    state.classes.update(maxima, taken, labels)
                state.next_image += len(image_ids) + len(skipped_ids)
                if on_batch is not None:
                    on_batch(state, len(image_ids))
    finally:
        recorder.remove()
    return state
