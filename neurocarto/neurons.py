"""Neurons: a run's layers and the flat neuron order every array of a run uses (layer order, then channel).

A neuron is one channel of one layer, named `layer:channel`; its flat index is its layer's offset
plus its channel. A run with dictionary units has, for a layer L, the layer `L/sae` whose channels are L's
dictionary latents (`L/sae:123`). Torch-free: the store's readers and the app use it too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurocarto.errors import NeuroCartoError, suggest


UNIT_SUFFIX = "/sae"         # a layer of dictionary latents is named after its layer with this suffix


def base_layer_name(name: str) -> str:
    """The layer a layer of dictionary latents reads (the name itself for any other layer)."""
    return name.removesuffix(UNIT_SUFFIX)


def is_latent_layer(name: str) -> bool:
    return name.endswith(UNIT_SUFFIX)


@dataclass(frozen=True)
class Layer:
    """A captured layer: its name, the shape of one image's maps, and where the maps come from."""

    name: str
    channels: int
    height: int
    width: int
    module: str = ""              # module path; "" = the name
    call: int = 0                 # which call of the module in one forward pass (0 = the first)
    item: int | str | None = None  # the output's element, when the module returns a tuple/list/dict
    layout: str = "nchw"          # nchw | nhwc | tokens
    extra_tokens: int = 0         # leading tokens without a place (tokens layout)

    @property
    def module_name(self) -> str:
        return self.module or self.name

    def describe(self) -> dict:
        """JSON-able description for the manifest (defaults left out)."""
        described = {"name": self.name, "channels": self.channels, "height": self.height, "width": self.width}
        for key, default in (("module", ""), ("call", 0), ("item", None), ("layout", "nchw"), ("extra_tokens", 0)):
            if getattr(self, key) != default:
                described[key] = getattr(self, key)
        return described

    @classmethod
    def from_description(cls, described: dict) -> "Layer":
        return cls(**described)


def neuron_offsets(layers: list[Layer]) -> list[int]:
    """Index of each layer's first neuron in the run's flat neuron order (layer order, then channel)."""
    offsets, total = [], 0
    for layer in layers:
        offsets.append(total)
        total += layer.channels
    return offsets


def neuron_ids(layers: list[Layer]) -> list[str]:
    """`layer:channel` for every neuron of the run, in flat order."""
    return [f"{layer.name}:{channel}" for layer in layers for channel in range(layer.channels)]


def parse_neuron_id(neuron: str, layers: list[Layer]) -> int:
    """Flat index of a `layer:channel` id; NeuroCartoError naming valid layers or channels."""
    layer_name, sep, channel_text = neuron.rpartition(":")
    by_name = {layer.name: (i, layer) for i, layer in enumerate(layers)}
    if not sep or layer_name not in by_name:
        raise NeuroCartoError(f"unknown neuron {neuron!r}: expected layer:channel with layer one of "
                              f"{suggest(layer_name or neuron, list(by_name))}")
    index, layer = by_name[layer_name]
    if not channel_text.isdigit() or int(channel_text) >= layer.channels:
        raise NeuroCartoError(f"unknown neuron {neuron!r}: {layer_name} has channels 0…{layer.channels - 1}")
    return neuron_offsets(layers)[index] + int(channel_text)


def neuron_layers(layers: list[Layer]) -> np.ndarray:
    """(neurons,) each neuron's layer index."""
    return np.repeat(np.arange(len(layers)), [layer.channels for layer in layers])
