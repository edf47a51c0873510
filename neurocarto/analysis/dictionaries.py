"""Sparse dictionaries of a stored run's layers, fitted after the fact (`compute.dictionary_fit`) and kept with the
run (`store.dictionaries`), with their quality in a few lines."""
from __future__ import annotations

from typing import Callable

from neurocarto.analysis.rerun import prepared_for
from neurocarto.compute.dictionary_fit import dictionary_weights, fit_layers
from neurocarto.config import DictionaryParams
from neurocarto.errors import NeuroCartoError, suggest
from neurocarto.store.dictionaries import store_dictionary, stored_quality


def fit_dictionaries(stored_run, layer_names: list[str] | None = None, params: DictionaryParams = DictionaryParams(),
                     device: str = "cpu", model=None, log: Callable[[str], None] = print) -> list[dict]:
    """Train, measure and keep the dictionary of each of `layer_names` (None: every layer) of a stored run; their
    quality records."""
    run = prepared_for(stored_run, model, "a dictionary")
    names = [layer.name for layer in run.layers]
    for name in layer_names or []:
        if name not in names:
            raise NeuroCartoError(f"unknown layer {name!r} of run {stored_run.name}: {suggest(name, names)}")
    layers = [run.layers[names.index(name)] for name in layer_names] if layer_names else list(run.layers)
    records = []
    for layer, dictionary, quality in fit_layers(run, layers, params, device, log):
        store_dictionary(stored_run.store, stored_run.key, layer.name, dictionary_weights(dictionary), quality)
        records.append(stored_quality(stored_run.store, stored_run.key, layer.name))
    return records


def format_quality(quality: dict) -> str:
    """A layer's quality record as a few lines for the terminal."""
    where = "held-out images" if quality["held out"] else "the run's own images (none is held out)"
    return "\n".join([
        f"dictionary of {quality['layer']}: {quality['latents']:,} latents for {quality['channels']} channels, "
        f"k = {quality['k']}",
        f"  on {quality['vectors']:,} vectors of {quality['images']:,} {where}:",
        f"    variance explained {quality['variance explained']:.3f} (FVU {quality['fvu']:.3f}), "
        f"mean L0 {quality['mean l0']:.1f}",
        f"    dead latents {quality['dead']:,} (still dead after training: {quality['dead after training']:,}), "
        f"dense (firing on > 10 % of vectors) {quality['dense']:,}",
        f"  accuracy with the layer reconstructed {quality['accuracy reconstructed']:.3f} against "
        f"{quality['accuracy']:.3f} as the model is "
        f"({quality['accuracy reconstructed'] / max(quality['accuracy'], 1e-12):.3f} of it)"])
