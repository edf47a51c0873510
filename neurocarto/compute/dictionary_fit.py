"""Dictionaries fitted to a run's layers and measured honestly.

Reads a prepared run and layers of its model; gives, per layer, a trained `TopKDictionary` and its quality record.
The activation vectors of every layer are sampled in one pass over a seeded sample of the run's images (vectors /
per_image of them); the quality is measured on vectors of held-out images (the data set's images outside the run's
sample, else the run's own): the fraction of variance explained, the mean number of latents firing per vector, dead
and dense latents, and the model's accuracy with the layer replaced by its reconstruction beside its accuracy as it is.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from neurocarto.compute.dictionary import TopKDictionary, dictionary_quality, sample_vectors, train_dictionary
from neurocarto.config import DictionaryParams
from neurocarto.inputs.capture import LayerCapture, as_maps, with_maps
from neurocarto.inputs.prepared_run import PreparedRun, RunImages, collate_readable
from neurocarto.neurons import Layer
from neurocarto.store.dictionaries import WEIGHTS


def image_batches(run: PreparedRun, indices: np.ndarray, batch_size: int = 64,
                  labels: list | None = None) -> Iterator[torch.Tensor]:
    """The readable images of data-set `indices`, batch by batch (their labels appended to `labels`, if given)."""
    loader = DataLoader(RunImages(run.dataset, indices, run.model.transform), batch_size=batch_size,
                        collate_fn=collate_readable)
    for images, batch_labels, _ids, _skipped in loader:
        if len(images):
            if labels is not None:
                labels.extend(batch_labels.tolist())
            yield images


def predictions(run: PreparedRun, indices: np.ndarray, device: str | torch.device = "cpu", layer: Layer | None = None,
                dictionary: TopKDictionary | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(predicted output, true class's output) for each readable image of `indices`; with `dictionary`, `layer`
    replaced by its reconstruction."""
    model, targets = run.model.module.to(device).eval(), run.output_classes()
    dictionary = dictionary.to(device) if dictionary is not None else None

    def reconstructed(_index: int, tensor: torch.Tensor) -> torch.Tensor:
        maps = dictionary.reconstructed_maps(as_maps(tensor, layer).float())
        return with_maps(tensor, layer, maps.to(tensor.dtype).contiguous())

    involved, edit = ([layer], reconstructed) if dictionary is not None else ([], None)
    labels: list[int] = []
    predicted = []
    with torch.inference_mode(), LayerCapture(model, involved, lambda *_: None, edit=edit):
        for images in image_batches(run, indices, labels=labels):
            logits = model(images.to(device))
            predicted.append((logits[0] if isinstance(logits, (tuple, list)) else logits).argmax(1).cpu().numpy())
    return np.concatenate(predicted), targets[np.array(labels)]


def reconstruction_accuracy(run: PreparedRun, layer: Layer, dictionary: TopKDictionary, indices: np.ndarray,
                            device: str | torch.device = "cpu") -> tuple[float, float]:
    """(accuracy of the model as it is, accuracy with `layer` replaced by its reconstruction) on `indices`."""
    original, truth = predictions(run, indices, device)
    reconstructed, _ = predictions(run, indices, device, layer, dictionary)
    return float((original == truth).mean()), float((reconstructed == truth).mean())


def fit_layers(run: PreparedRun, layers: list[Layer], params: DictionaryParams, device: str | torch.device = "cpu",
               log: Callable[[str], None] = print,
               skip: frozenset[str] = frozenset()) -> Iterator[tuple[Layer, TopKDictionary, dict]]:
    """Each of `layers` (modules of the run's model) but those named in `skip` with its trained dictionary and quality
    record, layer by layer. The vectors of all of `layers` are sampled first, in one pass, so that a layer's
    dictionary does not depend on which others are fitted with it."""
    for layer in layers:
        params.check(layer.channels)
    count = -(-params.vectors // params.per_image)
    images = np.random.default_rng(params.seed).permutation(run.indices)[:count]
    log(f"sampling {params.vectors:,} activation vectors of {len(layers)} layers from {len(images):,} images")
    samples = sample_vectors(run.model.module, layers, image_batches(run, images), params.vectors, params.per_image,
                             params.seed, device)
    held_out, is_held_out = run.held_out_images(params.images, params.seed)
    tests = sample_vectors(run.model.module, layers, image_batches(run, held_out), params.vectors, params.per_image,
                           params.seed + 1, device)
    original, truth = predictions(run, held_out, device)
    for layer, vectors, test in zip(layers, samples, tests):
        if layer.name in skip:
            continue
        latents, k = params.latents(layer.channels), params.k_for(layer.channels)
        log(f"{layer.name}: {latents:,} latents (k = {k}) on {len(vectors):,} vectors, {params.epochs} epochs")
        dictionary, training = train_dictionary(vectors.to(device), latents, k, params.epochs, params.batch_size,
                                                params.learning_rate, params.seed)
        quality = dictionary_quality(dictionary.cpu(), test)
        reconstructed, _ = predictions(run, held_out, device, layer, dictionary)
        quality.update({"layer": layer.name, "channels": layer.channels, "images": int(len(held_out)),
                        "held out": bool(is_held_out), "accuracy": float((original == truth).mean()),
                        "accuracy reconstructed": float((reconstructed == truth).mean()),
                        "training fvu per epoch": training.fvu_per_epoch, "dead after training": training.dead,
                        "params": {"expansion": params.expansion, "k": k, "vectors": params.vectors,
                                   "per_image": params.per_image, "epochs": params.epochs, "seed": params.seed}})
        yield layer, dictionary.cpu(), quality


def dictionary_weights(dictionary: TopKDictionary) -> dict[str, np.ndarray]:
    """The arrays a dictionary is stored as (`store.dictionaries.WEIGHTS`)."""
    return {name: getattr(dictionary, name).detach().cpu().numpy() for name in WEIGHTS}
