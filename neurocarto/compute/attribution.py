"""Per-class neuron-level edge weights: how the neurons of one layer drive those of the next.

Reads the class matrix A, the layers and their feeding map (`inputs/feeding.py`); gives, per class, the
chosen neurons (the top `top_fraction` of each layer by A[class], A > 0) and the weight from every
chosen upstream neuron u to every chosen downstream neuron d it feeds: gradient × activation, for d's
spatial maximum, Σ_xy a_u · ∂max(a_d)/∂a_u, averaged over the class's images. The nodes and edges at
any cut of the concept hierarchy are groupings and sums of these (`concept_graph.py`).
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from neurocarto.compute.cone import Cone, TracedModel
from neurocarto.compute.conv_paths import ConvPath, candidate_paths, identify, path_sums
from neurocarto.concepts.concept_graph import WEIGHT_DTYPE, chosen_neurons
from neurocarto.inputs.capture import LayerCapture, ModuleCall, as_maps
from neurocarto.inputs.feeding import Feed
from neurocarto.neurons import Layer, neuron_offsets


def _layers_of(chosen: np.ndarray, layers: list[Layer]) -> tuple[list[int], np.ndarray]:
    """The layers' first neurons, and the layer of each chosen neuron."""
    offsets = neuron_offsets(layers)
    return offsets, np.searchsorted(offsets, chosen["neuron"], side="right") - 1


def needed_channels(chosen: np.ndarray, layers: list[Layer], feeds: list[Feed]) -> dict[int, np.ndarray]:
    """Per downstream layer index, its chosen channels (`concept_graph.chosen_neurons`) that some layer feeds."""
    offsets, layer_of = _layers_of(chosen, layers)
    fed = {}
    for feed in feeds:
        channels = chosen["neuron"][layer_of == feed.downstream] - offsets[feed.downstream]
        fed.setdefault(feed.downstream, set()).update(int(c) for c in channels if feed.start <= c < feed.stop)
    return {layer: np.array(sorted(channels), dtype=np.int64) for layer, channels in fed.items() if channels}


class FeedPaths:
    """How each feed's sums are computed: in closed form (`conv_paths`), along its gradient cone (`cone`), or
    by autograd.

    A feed is decided on the first `DECIDING_IMAGES` images of the first batch that uses it (the rest of that
    batch follows the decision): autograd computes its sums, and the first candidate
    that agrees becomes its method for every later batch and class: a closed form or an exact cone when its
    sums equal autograd's, a cone with global context held when each downstream neuron's in-edges rank as
    autograd's do (mean rank correlation ≥ `MIN_RANK_CORRELATION`; its measured error is kept in `errors`).
    A cone is offered only where its windows are at most `MAX_WINDOW_SHARE` of its maps (small maps, wide
    blocks: one backward per channel over the whole map is cheaper).
    """

    def __init__(self, model: nn.Module, layers: list[Layer], feeds: list[Feed], calls: list[ModuleCall] | None,
                 traced: TracedModel | None = None):
        self.decided: dict[int, ConvPath | Cone | None] = {}
        self.candidates: dict[int, list] = {}
        self.errors: dict[int, dict] = {}
        self.traced = traced if traced is not None and len(traced.nodes) == len(layers) else None
        position = {} if calls is None else {(call.module, call.call): i for i, call in enumerate(calls)}
        folded: dict = {}           # each conv folded with its norm once for all feeds; undecided ones go later
        for k, feed in enumerate(feeds):
            layer, upstream = layers[feed.downstream], layers[feed.upstream]
            ends = position.get((upstream.module_name, upstream.call)), position.get((layer.module_name, layer.call))
            options = [] if None in ends or layer.layout != "nchw" or layer.item is not None else candidate_paths(
                model, calls, ends[0], ends[1], feed.stop - feed.start, folded)
            cone = None if self.traced is None else self.traced.cone(feed.upstream, feed.downstream)
            options += [cone] if cone is not None and cone.window_share() <= MAX_WINDOW_SHARE else []
            if options:
                self.candidates[k] = options
            else:
                self.decided[k] = None

    def path(self, k: int) -> ConvPath | Cone | None:
        return self.decided.get(k)

    def pending(self, k: int) -> bool:
        return k not in self.decided

    def decide(self, k: int, feed: Feed, inputs: dict[str, torch.Tensor], values: dict[str, torch.Tensor],
               maps: torch.Tensor, chosen: torch.Tensor, sources: torch.Tensor, reference: np.ndarray) -> None:
        """Keep the first candidate that agrees with autograd's `reference` sums on this batch."""
        self.decided[k] = None
        scale = np.abs(reference).max() if reference.size else 0.0
        for candidate in self.candidates.pop(k):
            if isinstance(candidate, Cone):
                fast = candidate.sums(values, chosen, sources).cpu().numpy()
                expected = reference[:, sources.cpu().numpy()]
                if candidate.exact:
                    if np.allclose(fast, expected, rtol=1e-3, atol=1e-4 * scale + 1e-12):
                        self.decided[k] = candidate
                        return
                    continue
                error = cone_error(fast, expected)
                if error["rank_correlation"] >= MIN_RANK_CORRELATION:
                    self.decided[k], self.errors[k] = candidate, error
                    return
                continue
            path = identify(candidate, inputs, maps, chosen - feed.start)
            if path is None or inputs[path.source].shape[1] != reference.shape[1]:
                continue
            fast = path_sums(path, inputs, maps, chosen - feed.start)
            if fast is not None and np.allclose(fast.cpu().numpy(), reference, rtol=1e-3, atol=1e-4 * scale + 1e-12):
                self.decided[k] = path
                return

    def reject(self, k: int) -> None:
        """A path failed its check on a batch: the feed goes back to autograd."""
        self.decided[k] = None

    def convs(self) -> set[str]:
        """Conv modules whose inputs a batch needs: those of verified paths and of undecided candidates."""
        paths = [path for path in self.decided.values() if isinstance(path, ConvPath)]
        paths += [path for options in self.candidates.values() for path in options if isinstance(path, ConvPath)]
        return {name for path in paths for name in (path.conv, path.source)}

    def cones(self) -> list[Cone]:
        """The cones a batch computes: those of decided feeds and undecided candidates."""
        cones = [path for path in self.decided.values() if isinstance(path, Cone)]
        return cones + [path for options in self.candidates.values() for path in options if isinstance(path, Cone)]

    def methods(self) -> dict:
        """How many feeds each method computes, and the error of each approximate cone, for the manifest."""
        kinds = ["closed_form" if isinstance(p, ConvPath) else "autograd" if p is None else
                 "exact_cone" if p.exact else "approximate_cone" for p in self.decided.values()]
        return {"feed_methods": {kind: kinds.count(kind) for kind in
                          ("closed_form", "exact_cone", "approximate_cone", "autograd")},
                "approximate_errors": [self.errors[k] for k in sorted(self.errors)]}


MIN_RANK_CORRELATION = 0.95
DECIDING_IMAGES = 8         # autograd's per-channel backward on these only, not on the whole first batch
MAX_WINDOW_SHARE = 0.5      # a cone whose windows cover more of its maps costs more than autograd's full backward


def cone_error(fast: np.ndarray, reference: np.ndarray) -> dict:
    """An approximate cone's sums against autograd's: the mean over downstream neurons of the rank correlation
    of their in-edges, the smallest of them, and the largest difference relative to the largest edge."""
    correlations = []
    for got, expected in zip(fast, reference):
        if np.ptp(expected) > 0 and np.ptp(got) > 0:
            correlations.append(np.corrcoef(np.argsort(np.argsort(got)), np.argsort(np.argsort(expected)))[0, 1])
    scale = np.abs(reference).max() if reference.size else 0.0
    return {"rank_correlation": float(np.mean(correlations)) if correlations else 1.0,
            "min_rank_correlation": float(np.min(correlations)) if correlations else 1.0,
            "max_relative_error": float(np.abs(fast - reference).max() / scale) if scale > 0 else 0.0}


def channel_attributions(model: nn.Module, layers: list[Layer], feeds: list[Feed], channels: dict[int, np.ndarray],
                         batches: Iterable[torch.Tensor], device: torch.device | str = "cpu",
                         paths: FeedPaths | None = None,
                         sources: dict[int, np.ndarray] | None = None) -> tuple[dict[int, np.ndarray], int]:
    """Σ over images of gradient × activation, per feed: (downstream channels, upstream channels), and the image count.

    Rows follow `channels[feed.downstream]`; rows of channels outside the feed's range stay 0. A feed that
    `paths` knows to be one convolution is summed in closed form, one it follows along its cone only for the
    upstream channels `sources[feed.upstream]` (all when not given; the other columns stay 0); every other feed
    differentiates only its own channels and only down to its own upstream layer.
    One function: the forward pass, the backward passes and the per-feed sums share one pass over the batch.
    """
    paths = paths or FeedPaths(model, layers, feeds, None)
    feeds_used = []     # (feed index, feed, its rows of channels[feed.downstream], their channels as a tensor)
    for k, feed in enumerate(feeds):
        chosen = channels.get(feed.downstream, np.empty(0, dtype=np.int64))
        rows = np.flatnonzero((chosen >= feed.start) & (chosen < feed.stop))
        if len(rows):
            feeds_used.append((k, feed, rows, torch.from_numpy(chosen[rows]).to(device)))
    involved = sorted({f.upstream for _, f, _, _ in feeds_used} | set(channels))
    columns = {i: torch.from_numpy(np.arange(layers[i].channels) if sources is None or i not in sources
                                   else sources[i]).to(device) for i in involved}
    conv_inputs: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    sums = {k: np.zeros((len(channels[f.downstream]), layers[f.upstream].channels)) for k, f, _, _ in feeds_used}
    n_images = 0
    parameters = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    handles = [modules[name].register_forward_pre_hook(
        lambda _m, inputs, name=name: conv_inputs.__setitem__(name, inputs[0].detach())) for name in paths.convs()]

    def one_pass(images: torch.Tensor, autograd: list, closed_form: list, cones: list) -> list:
        """Add one batch's sums of these feeds; returns the closed-form feeds whose path failed on it."""
        failed = []
        images = images.to(device).requires_grad_(bool(autograd))
        with torch.set_grad_enabled(bool(autograd)):
            maps, raw, values = _forward(model, layers, involved, paths, images)
            maxima = {i: maps[i].flatten(2).amax(dim=2) for i in {feed.downstream for _, feed, _, _ in autograd}}
            for k, feed, rows, chosen in autograd:
                batch_sums = np.zeros((len(rows), layers[feed.upstream].channels))
                upstream, activation = raw[feed.upstream], maps[feed.upstream].detach()
                for picked, grads in _gradients(maxima[feed.downstream][:, chosen], upstream):
                    if grads is not None:
                        grads = as_maps(grads.flatten(0, 1), layers[feed.upstream]).unflatten(0, grads.shape[:2])
                        batch_sums[picked] = torch.einsum("kbchw,bchw->kc", grads, activation).double().cpu().numpy()
                sums[k][rows] += batch_sums
                if paths.pending(k):
                    paths.decide(k, feed, conv_inputs, values, maps[feed.downstream][:, chosen].detach(), chosen,
                                 columns[feed.upstream], batch_sums)
        for item in closed_form:
            k, feed, rows, chosen = item
            batch_sums = path_sums(paths.path(k), conv_inputs, maps[feed.downstream][:, chosen], chosen - feed.start)
            if batch_sums is None:
                paths.reject(k)
                failed.append(item)
            else:
                sums[k][rows] += batch_sums.cpu().numpy()
        for k, feed, rows, chosen in cones:
            picked = columns[feed.upstream].cpu().numpy()
            sums[k][np.ix_(rows, picked)] += paths.path(k).sums(values, chosen, columns[feed.upstream]).cpu().numpy()
        conv_inputs.clear()
        return failed

    try:
        for batch in batches:
            deciding = len(batch) > DECIDING_IMAGES and any(paths.pending(item[0]) for item in feeds_used)
            for images in (batch[:DECIDING_IMAGES], batch[DECIDING_IMAGES:]) if deciding else (batch,):
                autograd = [item for item in feeds_used if paths.path(item[0]) is None]
                closed_form = [item for item in feeds_used if isinstance(paths.path(item[0]), ConvPath)]
                cones = [item for item in feeds_used if isinstance(paths.path(item[0]), Cone)]
                failed = one_pass(images, autograd, closed_form, cones)
                if failed:      # a path that no longer holds: these images again, those feeds by autograd
                    one_pass(images, failed, [], [])
                n_images += len(images)
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in zip(model.parameters(), parameters):
            p.requires_grad_(flag)
    return sums, n_images


def _forward(model: nn.Module, layers: list[Layer], involved: list[int], paths: FeedPaths, images: torch.Tensor):
    """One forward pass: the involved layers' maps, their raw outputs (to differentiate) and, while some feed
    is or may be computed along its cone, the node values the cones read (through the traced model)."""
    traced, cones = paths.traced, paths.cones()
    if traced is not None and cones:
        keep = {traced.nodes[i].name for i in involved} | {name for cone in cones for name in cone.needs()}
        values = traced.run(images, keep)
        raw = {i: values[traced.nodes[i].name] for i in involved}
        return raw, raw, values
    maps: dict[int, torch.Tensor] = {}
    with LayerCapture(model, layers, maps.__setitem__, involved, isolate=True) as capture:
        model(images)
    return maps, capture.raw, {}


def _gradients(maxima: torch.Tensor, upstream: torch.Tensor, max_elements: int = 2 ** 20):
    """Yield (column indices, gradients of those columns of maxima, summed over images, w.r.t. upstream:
    (columns, *upstream.shape)).

    Columns share one vmapped backward pass (`is_grads_batched`) while their gradients stay under
    `max_elements`; on CPU, larger maps go one plain backward pass per column, which beat one vmapped pass
    over all columns by 1.5–3× on the blocks measured (small maps are the other way round: per-pass overhead)."""
    n_columns = maxima.shape[1]
    chunk = max(1, min(n_columns, max_elements // max(upstream.numel(), 1)))
    for start in range(0, n_columns, chunk):
        columns = np.arange(start, min(start + chunk, n_columns))
        selector = torch.zeros((len(columns),) + tuple(maxima.shape), device=maxima.device, dtype=maxima.dtype)
        selector[torch.arange(len(columns)), :, torch.from_numpy(columns)] = 1.0
        if len(columns) == 1:
            (grad,) = torch.autograd.grad(maxima, [upstream], grad_outputs=selector[0], retain_graph=True,
                                          allow_unused=True)
            yield columns, None if grad is None else grad[None]
        else:
            (grads,) = torch.autograd.grad(maxima, [upstream], grad_outputs=selector, retain_graph=True,
                                           is_grads_batched=True, allow_unused=True)
            yield columns, grads


def neuron_weights(chosen: np.ndarray, layers: list[Layer], feeds: list[Feed], channels: dict[int, np.ndarray],
                   sums: dict[int, np.ndarray], n_images: int) -> np.ndarray:
    """Mean gradient × activation from every chosen upstream neuron to every chosen downstream neuron it feeds
    (concept_graph.WEIGHT_DTYPE; zeros left out)."""
    offsets, layer_of = _layers_of(chosen, layers)
    parts = []
    for k, feed in enumerate(feeds):
        if k not in sums:
            continue
        rows = np.flatnonzero((channels[feed.downstream] >= feed.start) & (channels[feed.downstream] < feed.stop))
        sources = chosen["neuron"][layer_of == feed.upstream]
        block = sums[k][rows][:, sources - offsets[feed.upstream]] / max(n_images, 1)
        target, source = np.nonzero(block)
        targets = offsets[feed.downstream] + channels[feed.downstream][rows]
        parts.append(np.rec.fromarrays([sources[source], targets[target], block[target, source]], dtype=WEIGHT_DTYPE))
    return np.concatenate(parts) if parts else np.empty(0, dtype=WEIGHT_DTYPE)


def class_weights(model: nn.Module, layers: list[Layer], feeds: list[Feed], class_row: np.ndarray,
                  batches: Callable[[], Iterable[torch.Tensor]], device: torch.device | str, top_fraction: float = 0.1,
                  paths: FeedPaths | None = None, max_neurons: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """One class's chosen neurons (at most `max_neurons` a layer), their neuron-level edge weights and the
    number of images averaged."""
    chosen = chosen_neurons(class_row, [layer.channels for layer in layers], top_fraction, max_neurons)
    channels = needed_channels(chosen, layers, feeds)
    offsets, layer_of = _layers_of(chosen, layers)
    sources = {i: chosen["neuron"][layer_of == i] - offsets[i] for i in range(len(layers))}
    sums, n_images = (channel_attributions(model, layers, feeds, channels, batches(), device, paths, sources)
                      if channels else ({}, 0))
    return chosen, neuron_weights(chosen, layers, feeds, channels, sums, n_images), n_images
