"""Which selected layer feeds which: the edges a class graph may draw.

For InceptionV1-style mixed blocks (torchvision's googlenet and our FashionInception) this is
the original's map: a mixed layer's 3×3 and 5×5 branch channels are fed by their bottleneck
layers when those are selected; its other channels, and the bottlenecks themselves, are fed by
the previous mixed (or stem) layer. For any other model, each selected layer is fed by the one
before it. In a run with dictionary units, a layer's latents are fed, in full, by whatever feeds the layer (the
latents, or the channels where the run has both, of those layers), and its channels, where the run has them, by its
latents.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from neurocarto.neurons import UNIT_SUFFIX, Layer


@dataclass(frozen=True)
class Feed:
    """Layer `upstream` feeds channels [start, stop) of layer `downstream` (indices into the run's layers)."""

    upstream: int
    downstream: int
    start: int
    stop: int


def _out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def mixed_branches(module: nn.Module) -> list[tuple[str, str | None, int]] | None:
    """(branch name, bottleneck sub-module name or None, channels) in concatenation order, if mixed."""
    names = dict(module.named_children())
    if {"branch1", "branch2", "branch3", "branch4"} <= set(names):           # torchvision googlenet
        return [("branch1", None, _out_channels(names["branch1"])),
                ("branch2", "branch2.0", _out_channels(names["branch2"])),
                ("branch3", "branch3.0", _out_channels(names["branch3"])),
                ("branch4", None, _out_channels(names["branch4"]))]
    if {"branch1x1", "branch3x3", "branch5x5", "branch_pool"} <= set(names):  # FashionInception
        return [("branch1x1", None, _out_channels(names["branch1x1"])),
                ("branch3x3", "branch3x3_bottleneck", _out_channels(names["branch3x3"])),
                ("branch5x5", "branch5x5_bottleneck", _out_channels(names["branch5x5"])),
                ("branch_pool", None, _out_channels(names["branch_pool"]))]
    return None


def feeding_map(model: nn.Module, layers: list[Layer], bases: list[Layer] | None = None) -> list[Feed]:
    """Every (upstream layer → channel range of downstream layer) the graphs may connect; `bases`: the layers
    spliced with dictionaries, in a run with dictionary units."""
    if not bases:
        return _channel_feeds(model, layers)
    index = {layer.name: i for i, layer in enumerate(layers)}
    feeds = {Feed(index[base.name + UNIT_SUFFIX], index[base.name], 0, base.channels)
             for base in bases if base.name in index}
    for feed in _channel_feeds(model, bases):
        upstream, downstream = bases[feed.upstream].name, index[bases[feed.downstream].name + UNIT_SUFFIX]
        feeds.add(Feed(index.get(upstream, index[upstream + UNIT_SUFFIX]), downstream, 0, layers[downstream].channels))
    return sorted(feeds, key=lambda feed: (feed.downstream, feed.upstream))


def _channel_feeds(model: nn.Module, layers: list[Layer]) -> list[Feed]:
    """The feeds among layers of channels."""
    modules = dict(model.named_modules())
    names = [layer.name for layer in layers]
    index = {name: i for i, name in enumerate(names)}

    def owner(name: str) -> str:
        """The selected layer a bottleneck belongs to (itself for any other layer)."""
        parts = name.split(".")
        for cut in range(1, len(parts)):
            prefix = ".".join(parts[:cut])
            if prefix in index:
                return prefix
        return name

    def previous(i: int) -> int | None:
        for j in range(i - 1, -1, -1):
            if owner(names[j]) != owner(names[i]):
                return j
        return None

    feeds = []
    for i, layer in enumerate(layers):
        upstream = previous(i)
        branches = mixed_branches(modules[layer.module_name]) if layer.layout == "nchw" and layer.item is None else None
        if branches is None:
            if upstream is not None:
                feeds.append(Feed(upstream, i, 0, layer.channels))
            continue
        start = 0
        for _branch, bottleneck, channels in branches:
            source = index.get(f"{layer.name}.{bottleneck}") if bottleneck else None
            source = upstream if source is None else source
            if source is not None:
                feeds.append(Feed(source, i, start, start + channels))
            start += channels
    return feeds
