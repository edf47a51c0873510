"""Stored dictionaries: per run and layer, a sparse dictionary's weights and its quality figures, written when one is
trained (the dictionary stage of a run with dictionary units, or `analysis.dictionaries` for any run) and read by
anyone (torch-free: the arrays and a JSON record)."""
from __future__ import annotations

import numpy as np

from neurocarto.neurons import base_layer_name
from neurocarto.store import keys

WEIGHTS = ("encoder", "encoder_bias", "decoder", "centre")


def store_dictionary(store, key: str, layer: str, weights: dict[str, np.ndarray], quality: dict) -> None:
    """The weights (`WEIGHTS`, float32) then the quality record, whose presence marks the dictionary complete."""
    for name in WEIGHTS:
        store.put_array(key, f"{keys.dictionary(layer)}/{name}", np.asarray(weights[name], np.float32))
    store.put_json(key, f"{keys.dictionary(layer)}/quality", quality)


def stored_quality(store, key: str, layer: str) -> dict | None:
    name = f"{keys.dictionary(layer)}/quality"
    return store.get_json(key, name) if store.has_json(key, name) else None


def stored_qualities(run) -> list[dict]:
    """The quality record of every layer of a stored run that has a dictionary, in layer order (a layer of latents
    stands for the layer it reads)."""
    names = dict.fromkeys(base_layer_name(name) for name in run.layer_names)
    return [quality for quality in (stored_quality(run.store, run.key, name) for name in names) if quality is not None]


def quality_line(quality: dict) -> str:
    """One layer's dictionary in a few words: its size and the figures that say how faithful it is."""
    accuracy = (f"{quality['accuracy reconstructed'] / quality['accuracy']:.3f} of the model's" if quality["accuracy"]
                else f"{quality['accuracy reconstructed']:.3f} (the model's own is 0)")
    return (f"{quality['layer']} {quality['latents']:,} latents (k {quality['k']}): variance explained "
            f"{quality['variance explained']:.2f}, {quality['dead']:,} dead, {quality['dense']:,} dense, accuracy "
            f"{accuracy}")


def stored_weights(store, key: str, layer: str) -> dict[str, np.ndarray] | None:
    """The layer's dictionary weights, or None when none is stored."""
    if stored_quality(store, key, layer) is None:
        return None
    return {name: store.get_array(key, f"{keys.dictionary(layer)}/{name}") for name in WEIGHTS}
