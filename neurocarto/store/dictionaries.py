"""Stored dictionaries: per run and layer, a sparse dictionary's weights and its quality figures, written when
`analysis.dictionaries` has trained it and read by anyone (torch-free: the arrays and a JSON record)."""
from __future__ import annotations

import numpy as np

from neurocarto.store import keys

WEIGHTS = ("encoder", "encoder_bias", "decoder", "centre")


def store_dictionary(run, layer: str, weights: dict[str, np.ndarray], quality: dict) -> None:
    """The weights (`WEIGHTS`, float32) then the quality record, whose presence marks the dictionary complete."""
    for name in WEIGHTS:
        run.store.put_array(run.key, f"{keys.dictionary(layer)}/{name}", np.asarray(weights[name], np.float32))
    run.store.put_json(run.key, f"{keys.dictionary(layer)}/quality", quality)


def stored_quality(run, layer: str) -> dict | None:
    name = f"{keys.dictionary(layer)}/quality"
    return run.store.get_json(run.key, name) if run.store.has_json(run.key, name) else None


def stored_qualities(run) -> list[dict]:
    """The quality record of every layer of the run that has a dictionary, in layer order."""
    return [quality for quality in (stored_quality(run, layer) for layer in run.layer_names) if quality is not None]


def quality_line(quality: dict) -> str:
    """One layer's dictionary in a few words: its size and the figures that say how faithful it is."""
    return (f"{quality['layer']} {quality['latents']:,} latents (k {quality['k']}): variance explained "
            f"{quality['variance explained']:.2f}, {quality['dead']:,} dead, {quality['dense']:,} dense, accuracy "
            f"{quality['accuracy reconstructed'] / max(quality['accuracy'], 1e-12):.3f} of the model's")


def stored_weights(run, layer: str) -> dict[str, np.ndarray] | None:
    """The layer's dictionary weights, or None when none is stored."""
    if stored_quality(run, layer) is None:
        return None
    return {name: run.store.get_array(run.key, f"{keys.dictionary(layer)}/{name}") for name in WEIGHTS}
