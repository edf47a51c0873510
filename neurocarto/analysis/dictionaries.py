"""A sparse dictionary of one layer of a stored run, with honest quality figures.

Trained on activation vectors of the run's own images (`compute.dictionary`); measured on vectors of held-out images
(the data set's images outside the run's sample, else the run's own): the fraction of variance explained, the mean
number of latents firing per vector, dead and dense latents, and the model's accuracy with the layer replaced by
its reconstruction beside the accuracy of the model as it is. Kept with the run (`store.dictionaries`).
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from neurocarto.analysis.ablation import ablation_images, output_classes
from neurocarto.analysis.rerun import prepared_for
from neurocarto.compute.dictionary import TopKDictionary, dictionary_quality, sample_vectors, train_dictionary
from neurocarto.config import DictionaryParams
from neurocarto.errors import NeuroCartoError, suggest
from neurocarto.inputs.capture import LayerCapture, as_maps, with_maps
from neurocarto.inputs.prepared_run import PreparedRun, RunImages, collate_readable
from neurocarto.store.dictionaries import WEIGHTS, store_dictionary, stored_quality


def _batches(run: PreparedRun, indices: np.ndarray, batch_size: int = 64,
             labels: list | None = None) -> Iterator[torch.Tensor]:
    """The readable images of data-set `indices`, batch by batch (their labels appended to `labels`, if given)."""
    loader = DataLoader(RunImages(run.dataset, indices, run.model.transform), batch_size=batch_size,
                        collate_fn=collate_readable)
    for images, batch_labels, _ids, _skipped in loader:
        if len(images):
            if labels is not None:
                labels.extend(batch_labels.tolist())
            yield images


def predictions(run: PreparedRun, indices: np.ndarray, device: str | torch.device = "cpu", layer_index: int | None = None,
                dictionary: TopKDictionary | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(predicted output, true class's output) for each readable image of `indices`; with `dictionary`, the layer
    `layer_index` replaced by its reconstruction."""
    model, targets = run.model.module.to(device).eval(), output_classes(run)
    edit, involved = None, []
    if dictionary is not None:
        layer, dictionary, involved = run.layers[layer_index], dictionary.to(device), [layer_index]

        def edit(_index: int, tensor: torch.Tensor) -> torch.Tensor:
            maps = dictionary.reconstructed_maps(as_maps(tensor, layer).float())
            return with_maps(tensor, layer, maps.to(tensor.dtype).contiguous())

    labels: list[int] = []
    predicted = []
    with torch.inference_mode(), LayerCapture(model, run.layers, lambda *_: None, involved, edit=edit):
        for images in _batches(run, indices, labels=labels):
            logits = model(images.to(device))
            predicted.append((logits[0] if isinstance(logits, (tuple, list)) else logits).argmax(1).cpu().numpy())
    return np.concatenate(predicted), targets[np.array(labels)]


def reconstruction_accuracy(run: PreparedRun, layer_index: int, dictionary: TopKDictionary, indices: np.ndarray,
                            device: str | torch.device = "cpu") -> tuple[float, float]:
    """(accuracy of the model as it is, accuracy with the layer replaced by its reconstruction) on `indices`."""
    original, truth = predictions(run, indices, device)
    reconstructed, _ = predictions(run, indices, device, layer_index, dictionary)
    return float((original == truth).mean()), float((reconstructed == truth).mean())


def fit_dictionaries(stored_run, layer_names: list[str] | None = None, params: DictionaryParams = DictionaryParams(),
                     device: str = "cpu", model=None, log: Callable[[str], None] = print) -> list[dict]:
    """Train, measure and keep the dictionary of each of `layer_names` (None: every layer) of a stored run, their
    activation vectors sampled in one pass over the run's images (a seeded sample of vectors / per_image of them);
    their quality records."""
    run = prepared_for(stored_run, model, "a dictionary")
    names = [layer.name for layer in run.layers]
    for name in layer_names or []:
        if name not in names:
            raise NeuroCartoError(f"unknown layer {name!r} of run {stored_run.name}: {suggest(name, names)}")
    indices = [names.index(name) for name in layer_names] if layer_names else list(range(len(names)))
    layers = [run.layers[index] for index in indices]
    for layer in layers:
        params.check(layer.channels)
    count = -(-params.vectors // params.per_image)
    images = np.random.default_rng(params.seed).permutation(run.indices)[:count]
    log(f"sampling {params.vectors:,} activation vectors of {len(layers)} layers from {len(images):,} images")
    samples = sample_vectors(run.model.module, layers, _batches(run, images), params.vectors, params.per_image,
                             params.seed, device)
    held_out, is_held_out = ablation_images(run, params.images, params.seed)
    tests = sample_vectors(run.model.module, layers, _batches(run, held_out), params.vectors, params.per_image,
                           params.seed + 1, device)
    original, truth = predictions(run, held_out, device)
    records = []
    for index, layer, vectors, test in zip(indices, layers, samples, tests):
        latents, k = params.latents(layer.channels), params.k_for(layer.channels)
        log(f"{layer.name}: {latents:,} latents (k = {k}) on {len(vectors):,} vectors, {params.epochs} epochs")
        dictionary, training = train_dictionary(vectors.to(device), latents, k, params.epochs, params.batch_size,
                                                params.learning_rate, params.seed)
        quality = dictionary_quality(dictionary.cpu(), test)
        reconstructed, _ = predictions(run, held_out, device, index, dictionary)
        quality.update({"layer": layer.name, "channels": layer.channels, "images": int(len(held_out)),
                        "held out": bool(is_held_out), "accuracy": float((original == truth).mean()),
                        "accuracy reconstructed": float((reconstructed == truth).mean()),
                        "training fvu per epoch": training.fvu_per_epoch, "dead after training": training.dead,
                        "params": {"expansion": params.expansion, "k": k, "vectors": params.vectors,
                                   "per_image": params.per_image, "epochs": params.epochs, "seed": params.seed}})
        weights = {"encoder": dictionary.encoder, "encoder_bias": dictionary.encoder_bias,
                   "decoder": dictionary.decoder, "centre": dictionary.centre}
        store_dictionary(stored_run, layer.name, {name: weights[name].detach().cpu().numpy() for name in WEIGHTS},
                         quality)
        records.append(stored_quality(stored_run, layer.name))
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
