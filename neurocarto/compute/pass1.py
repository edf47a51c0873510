"""Pass 1: one streaming pass over the images for all layers at once.

Reads a model, its layers and a DataLoader of (images, labels, image ids). Per image and
neuron it takes the spatial maximum of the layer's output and where it is, then keeps
- per neuron, its top-k images (value, image id, argmax position), merged batch by batch;
- the class × neuron matrix A (Summit): per image and layer, the channel maxima normalised to
  sum to 1, taken in descending order until their cumulative share reaches `threshold`, each
  taken channel counted for the image's class;
- per class, the sum of each neuron's maximum (→ the per-class mean);
- every neuron's maxima on an even sample of at most `SAMPLE_IMAGES` images (→ where one image's activation stands
  among the run's, `concepts.lit_graph.neuron_percentiles`).
Nothing of size images × neurons is kept: memory does not grow with the number of images.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.capture import LayerCapture
from neurocarto.neurons import Layer


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
        values = values.t().float()
        rows = None
        if self.values.shape[1] == self.k:
            # only neurons with a value above their k-th can change (an equal value has a later id and loses)
            rows = (values > self.values[:, -1:]).any(dim=1).nonzero().squeeze(1)
            if rows.numel() == 0:
                return
            values, positions = values[rows], positions.t()[rows]
        else:
            positions = positions.t()
        kept = slice(None) if rows is None else rows
        merged_values = torch.cat([self.values[kept], values], dim=1)
        merged_images = torch.cat([self.images[kept], image_ids.to(self.images).expand(len(values), -1)], dim=1)
        merged_positions = torch.cat([self.positions[kept], positions.to(torch.int32)], dim=1)
        order = torch.sort(merged_values, dim=1, descending=True, stable=True).indices[:, : self.k]
        if rows is None:
            self.values = merged_values.gather(1, order)
            self.images = merged_images.gather(1, order)
            self.positions = merged_positions.gather(1, order)
        else:
            self.values[rows] = merged_values.gather(1, order)
            self.images[rows] = merged_images.gather(1, order)
            self.positions[rows] = merged_positions.gather(1, order)

    def kth(self) -> torch.Tensor | None:
        """Each neuron's k-th value (what a new value must exceed), or None before k images."""
        return self.values[:, -1] if self.values.shape[1] == self.k else None

    def state(self) -> dict[str, np.ndarray]:
        return {"top_values": self.values.cpu().numpy(), "top_images": self.images.cpu().numpy(),
                "top_positions": self.positions.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        device = self.values.device
        self.values = torch.from_numpy(state["top_values"]).to(device)
        self.images = torch.from_numpy(state["top_images"]).to(device)
        self.positions = torch.from_numpy(state["top_positions"]).to(device)


class SummitThreshold:
    """Which channels the class matrix A counts, for all layers of a batch at once.

    Per image and layer, shares are the (non-negative) channel maxima over their layer's sum;
    channels are taken in descending share while the share before them is below threshold, so
    the one that crosses it is taken too; equal shares go to the lower channel. Layers are laid
    out side by side, padded to the widest, and only the `candidates` largest shares of each are
    ordered; the rare (image, layer) that takes all of them is ordered in full.
    """

    def __init__(self, layers: list[Layer], threshold: float, device: torch.device | str = "cpu",
                 candidates: int = 48):
        widest = max(layer.channels for layer in layers)
        n_neurons = sum(layer.channels for layer in layers)
        self.padded_index = torch.full((len(layers), widest), n_neurons, dtype=torch.int64)
        start = 0
        for row, layer in enumerate(layers):
            self.padded_index[row, : layer.channels] = torch.arange(start, start + layer.channels)
            start += layer.channels
        self.is_padding = (self.padded_index == n_neurons).to(device)
        self.flat_position = (~self.is_padding.cpu()).flatten().nonzero().squeeze(1).to(device)
        self.padded_index = self.padded_index.to(device)
        self.channels = torch.tensor([layer.channels for layer in layers], device=device)
        # a vanishing per-channel decrement makes exact ties order by channel under topk
        self.tie_break = torch.arange(widest, dtype=torch.float64, device=device) * 1e-15
        self.candidates = min(candidates, widest)
        self.threshold = threshold

    def __call__(self, maxima: torch.Tensor) -> torch.Tensor:
        """(batch, neurons) maxima → (batch, neurons) bool mask of the channels A counts."""
        batch = len(maxima)
        positive = maxima.to(torch.float64).clamp_min(0)
        padded = torch.cat([positive, positive.new_zeros(batch, 1)], dim=1)[:, self.padded_index]
        sums = padded.sum(dim=2, keepdim=True)
        shares = (padded / sums.clamp_min(torch.finfo(torch.float64).tiny)).masked_fill(self.is_padding, -1.0)
        keys = shares - self.tie_break
        order = torch.topk(keys, self.candidates, dim=2).indices
        taken_ordered = self._take(shares.gather(2, order)) & (sums > 0)
        taken = torch.zeros(shares.shape, dtype=torch.bool, device=maxima.device).scatter_(2, order, taken_ordered)
        unresolved = taken_ordered[..., -1] & (self.channels > self.candidates)
        if unresolved.any():
            images, layers = unresolved.nonzero(as_tuple=True)
            full_order = torch.sort(keys[images, layers], dim=1, descending=True).indices
            taken_rows = self._take(shares[images, layers].gather(1, full_order))
            taken[images, layers] = torch.zeros_like(taken_rows).scatter_(1, full_order, taken_rows)
        return taken.reshape(batch, -1)[:, self.flat_position]

    def _take(self, ordered_shares: torch.Tensor) -> torch.Tensor:
        before = torch.cumsum(ordered_shares, dim=-1) - ordered_shares
        return (before < self.threshold) & (ordered_shares >= 0)


SUM_SCALE = 2 ** 24     # maxima are summed in fixed point: exact, so any split of the images sums the same


class ClassStatistics:
    """The class × neuron matrix A, per-class sums of neuron maxima, and images per class.

    All three are integers (the sums in units of 2⁻²⁴), so partial statistics of shards of the
    images add up to exactly the statistics of the whole stream, in any order.
    """

    def __init__(self, n_classes: int, n_neurons: int, device: torch.device | str = "cpu"):
        self.counts = torch.zeros((n_classes, n_neurons), dtype=torch.int64, device=device)
        self.maxima_sums = torch.zeros((n_classes, n_neurons), dtype=torch.int64, device=device)
        self.images = torch.zeros(n_classes, dtype=torch.int64, device=device)

    def update(self, maxima: torch.Tensor, taken: torch.Tensor, labels: torch.Tensor) -> None:
        self.counts.index_add_(0, labels, taken.to(torch.int64))
        self.maxima_sums.index_add_(0, labels, torch.round(maxima.to(torch.float64) * SUM_SCALE).to(torch.int64))
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
    """Per-channel max and argmax of each layer's maps, reduced inside the capture hook.

    The reduction happens as the layer is reached, so later in-place operations cannot alter it and
    no full feature map outlives its layer. Positions are only needed where a maximum can enter
    its neuron's top-k (above `kth`); elsewhere they are left 0 once most of them are not.
    """

    def __init__(self, model: nn.Module, layers: list[Layer]):
        self.layers = layers
        self.kth: torch.Tensor | None = None       # (neurons,) current k-th value of each neuron
        self.maxima: dict[int, torch.Tensor] = {}
        self.positions: dict[int, torch.Tensor] = {}
        self.offsets = torch.cumsum(torch.tensor([0] + [layer.channels for layer in layers]), 0).tolist()
        self.capture = LayerCapture(model, layers, self._reduce).__enter__()

    def _reduce(self, index: int, maps: torch.Tensor) -> None:
        maps = maps.detach().flatten(2)
        maxima = maps.amax(dim=2)
        start, stop = self.offsets[index], self.offsets[index + 1]
        needed = None if self.kth is None else maxima.float() > self.kth[start:stop]
        if needed is None or needed.float().mean() > 0.25:
            positions = maps.argmax(dim=2)
        else:
            positions = torch.zeros(maxima.shape, dtype=torch.int64, device=maxima.device)
            images, channels = needed.nonzero(as_tuple=True)
            if len(images):
                positions[images, channels] = maps[images, channels].argmax(dim=1)
        self.maxima[index], self.positions[index] = maxima, positions

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, neurons) maxima and positions of the last forward pass, in the run's neuron order."""
        missing = self.capture.missing(set(self.maxima))
        if missing:
            raise NeuroCartoError(f"the forward pass did not reach layer(s) {', '.join(missing)}: the model calls "
                                  "them conditionally; choose layers every input reaches (--layers)")
        maxima = torch.cat([self.maxima[i].float() for i in range(len(self.layers))], dim=1)
        positions = torch.cat([self.positions[i] for i in range(len(self.layers))], dim=1)
        self.maxima.clear()
        self.positions.clear()
        return maxima, positions

    def remove(self) -> None:
        self.capture.__exit__()


SAMPLE_IMAGES = 1000       # images whose maxima are kept for every neuron: percentiles to 0.1 %, 4 kB a neuron


def sample_every(n_images: int) -> int:
    """The sample's stride over run image ids: every id that is a multiple of it, so that it spans the whole run
    (image folders come class by class) and any split into shards keeps the same images."""
    return max(1, math.ceil(n_images / SAMPLE_IMAGES))


class MaximaSample:
    """Every neuron's maxima on the run images whose id is a multiple of `every`, in id order."""

    def __init__(self, every: int, n_neurons: int):
        self.every = every
        self.maxima = np.zeros((0, n_neurons), dtype=np.float32)
        self.images = np.zeros(0, dtype=np.int64)

    def update(self, maxima: torch.Tensor, image_ids: torch.Tensor) -> None:
        """maxima: (batch, neurons); image_ids: (batch,), increasing."""
        keep = image_ids % self.every == 0
        if keep.any():
            self.maxima = np.concatenate([self.maxima, maxima[keep.to(maxima.device)].float().cpu().numpy()])
            self.images = np.concatenate([self.images, image_ids[keep].cpu().numpy()])

    def state(self) -> dict[str, np.ndarray]:
        return {"sample_maxima": self.maxima, "sample_images": self.images}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.maxima, self.images = state["sample_maxima"], state["sample_images"]


@dataclass
class Pass1State:
    """Everything pass 1 accumulates; `state()` is what a checkpoint and the store hold."""

    top_k: StreamingTopK
    classes: ClassStatistics
    next_image: int = 0
    skipped: list[int] = field(default_factory=list)
    sample: MaximaSample | None = None

    def state(self) -> dict[str, np.ndarray]:
        return {**self.top_k.state(), **self.classes.state(), **(self.sample.state() if self.sample else {}),
                "next_image": np.array(self.next_image), "skipped": np.array(self.skipped, dtype=np.int64)}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.top_k.load(state)
        self.classes.load(state)
        if self.sample is not None:
            self.sample.load(state)
        self.next_image = int(state["next_image"])
        self.skipped = state["skipped"].tolist()


def run_pass1(model: nn.Module, layers: list[Layer], batches, state: Pass1State, threshold: float,
              device: torch.device, amp: bool = False, on_batch=None) -> Pass1State:
    """Feed `batches` (yielding (images, labels, image_ids, skipped_ids)) through the model.

    `on_batch(state, n_images)` is called after each merged batch (progress, checkpoints).
    """
    recorder = LayerMaxima(model, layers)
    summit = SummitThreshold(layers, threshold, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16) \
        if amp else nullcontext()
    try:
        with torch.inference_mode(), autocast:
            for images, labels, image_ids, skipped_ids in batches:
                state.skipped.extend(skipped_ids)
                if len(image_ids):
                    images = images.to(device, non_blocking=True)
                    labels = labels.to(device, non_blocking=True)
                    recorder.kth = state.top_k.kth()
                    model(images)
                    maxima, positions = recorder.batch()
                    taken = summit(maxima)
                    state.top_k.update(maxima, positions, image_ids.to(device))
                    state.classes.update(maxima, taken, labels)
                    if state.sample is not None:
                        state.sample.update(maxima, image_ids)
                state.next_image += len(image_ids) + len(skipped_ids)
                if on_batch is not None:
                    on_batch(state, len(image_ids))
    finally:
        recorder.remove()
    return state


def merge_states(states: list[dict[str, np.ndarray]], k: int) -> dict[str, np.ndarray]:
    """The states of consecutive shards of one stream, in stream order → the state of the whole stream.

    Each shard's top-k is ordered by (value desc, image id asc) and shard ids increase, so a stable
    descending sort of the concatenation keeps that order: exactly the one-stream top-k. Class
    statistics are integers and add up exactly.
    """
    values = np.concatenate([state["top_values"] for state in states], axis=1)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    merged = {name: np.take_along_axis(np.concatenate([state[name] for state in states], axis=1), order, axis=1)
              for name in ("top_values", "top_images", "top_positions")}
    for name in ("class_matrix", "class_maxima_sums", "class_images"):
        merged[name] = np.sum([state[name] for state in states], axis=0)
    for name in ("skipped", "sample_maxima", "sample_images"):
        if name in states[0]:
            merged[name] = np.concatenate([state[name] for state in states])
    merged["next_image"] = np.array(max(int(state["next_image"]) for state in states))
    return merged
