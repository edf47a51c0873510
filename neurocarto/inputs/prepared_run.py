"""A run's validated inputs: model, dataset, image sample, layers and key.

`prepare` checks everything that can be checked cheaply (model, weights, data, layers,
parameters) before any long work, so bad input fails in seconds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from neurocarto.config import ExecutionConfig, RunConfig, default_top_k, stable_hash
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.data import open_dataset, subsample
from neurocarto.inputs.models import LoadedModel, load_model, resolve_layers
from neurocarto.neurons import Layer

PROBE_ATTEMPTS = 50


class RunImages(Dataset):
    """The run's images in run order: item i is (tensor or None if unreadable, label, i)."""

    def __init__(self, dataset, indices: np.ndarray, transform):
        self.dataset, self.indices, self.transform = dataset, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = int(self.indices[i])
        try:
            image = self.transform(self.dataset.load(index))
        except Exception:  # unreadable or corrupt file: counted and skipped, never a crash
            image = None
        return image, self.dataset.label(index), i


def collate_readable(items):
    """Batch of readable items → (images, labels, image ids, ids of unreadable items)."""
    readable = [item for item in items if item[0] is not None]
    skipped = [item[2] for item in items if item[0] is None]
    if not readable:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64), skipped
    return (torch.stack([item[0] for item in readable]),
            torch.tensor([item[1] for item in readable], dtype=torch.int64),
            torch.tensor([item[2] for item in readable], dtype=torch.int64), skipped)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise NeuroCartoError(f"--device {name}: not a device; valid: auto, cpu, cuda, cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuroCartoError(f"--device {name}: no CUDA GPU is available here; use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise NeuroCartoError(f"--device {name}: unsupported; valid: auto, cpu, cuda, cuda:N")
    return device


@dataclass
class PreparedRun:
    """A run's validated inputs and its key."""

    config: RunConfig
    model: LoadedModel
    dataset: object
    indices: np.ndarray
    layers: list[Layer]
    identity: dict
    key: str
    notes: list[str]               # what choosing the layers left out or assumed, for the log and the manifest
    splices: list = field(default_factory=list)    # the dictionary splices of a run with dictionary units

    @property
    def n_neurons(self) -> int:
        return sum(layer.channels for layer in self.layers)

    def load_images(self, image_ids: np.ndarray) -> torch.Tensor:
        """Model inputs of run images (ids into the run's image list), stacked in the given order."""
        images = RunImages(self.dataset, self.indices, self.model.transform)
        tensors = [images[int(i)][0] for i in image_ids]
        unreadable = [int(i) for i, t in zip(image_ids, tensors) if t is None]
        if unreadable:
            raise NeuroCartoError(f"images {unreadable[:5]} of this run can no longer be read: the dataset "
                                  "changed since pass 1; rebuild the run with --rebuild")
        return torch.stack(tensors)

    def held_out_images(self, count: int, seed: int = 0) -> tuple[np.ndarray, bool]:
        """Data-set indices of `count` images outside the run's sample (or the run's own when it holds them all),
        and whether they are held out."""
        outside = np.setdiff1d(np.arange(len(self.dataset)), self.indices)
        pool, held_out = (outside, True) if len(outside) else (self.indices, False)
        chosen = np.random.default_rng(seed).choice(pool, size=min(count, len(pool)), replace=False)
        return np.sort(chosen), held_out

    def output_classes(self) -> np.ndarray:
        """For each class of the data, the model output that predicts it."""
        names = self.dataset.class_names
        model_names = self.model.class_names
        if model_names and all(name in model_names for name in names):
            return np.array([model_names.index(name) for name in names])
        if model_names is None or len(model_names) == len(names):
            return np.arange(len(names))
        raise NeuroCartoError(f"the model's {len(model_names)} outputs do not name the data's classes "
                              f"({', '.join(names[:5])}…): accuracy per class cannot be measured")


def _first_readable(dataset, indices: np.ndarray, transform) -> torch.Tensor:
    problems = []
    for index in indices[:PROBE_ATTEMPTS]:
        try:
            return transform(dataset.load(int(index))).unsqueeze(0)
        except Exception as error:
            problems.append(f"{type(error).__name__}: {error}")
    raise NeuroCartoError(f"none of the first {min(len(indices), PROBE_ATTEMPTS)} images could be read and "
                          f"transformed for this model (first problem: {problems[0]})")


def prepare(config: RunConfig, execution: ExecutionConfig, model: LoadedModel | None = None) -> PreparedRun:
    """Validate the config and build the model (unless given: `models.from_module`), dataset and layers;
    raises NeuroCartoError early."""
    config.check()
    execution.check()
    model = model or load_model(config.model, config.weights, config.seed, config.image_size)
    dataset = open_dataset(config.data, execution.cache, model.class_names)
    if len(dataset) == 0:
        raise NeuroCartoError(f"the dataset {dataset.describe()} has no images")
    indices = subsample(len(dataset), config.max_images, config.seed)
    if config.top_k is None:
        config = replace(config, top_k=default_top_k(len(indices)))
    if config.top_k > len(indices):
        raise NeuroCartoError(f"--top-k {config.top_k} is larger than the {len(indices)} images of this run: "
                              f"choose --top-k ≤ {len(indices)} or more images")
    example = _first_readable(dataset, indices, model.transform)
    notes: list[str] = []
    layers = resolve_layers(model, list(config.layers) if config.layers else None, example, notes)
    identity = {
        "model": model.spec, "weights_checksum": model.weights_checksum,
        "data_fingerprint": dataset.fingerprint, "layers": [layer.name for layer in layers],
        "top_k": config.top_k, "threshold": config.threshold, "max_images": config.max_images,
        "seed": config.seed, "amp": config.amp, "image_size": config.image_size,
    }
    if config.units != "neurons":
        identity.update(units=config.units, dictionary=asdict(config.dictionary))
    return PreparedRun(config, model, dataset, indices, layers, identity, stable_hash(identity), notes)


