"""What a concept does to the prediction: its channels ablated on held-out images, against random sets.

Reads a prepared run (model, data, layers) and a set of neurons; gives, per class, accuracy and mean logit
before and after the neurons' channels are zeroed (or set to their mean activation), and the same for
`random_sets` random neuron sets of the same size in the same layers, so a drop can be read against chance.
Images are drawn (seeded) from the data set's images outside the run's sample, or from the run's own
images when the run holds them all (the result says which).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .capture import LayerCapture
from .errors import NeuroCartoError
from .neurons import Layer, neuron_layers, neuron_offsets
from .prepared_run import PreparedRun

METHODS = ("zero", "mean")


@dataclass(frozen=True)
class Ablation:
    """Per class (rows in the data set's class order): accuracy and mean logit of the true class's images."""

    neurons: list[str]
    method: str
    images: int
    held_out: bool                      # images outside the run's sample (else the run's own)
    class_names: list[str]
    accuracy_before: np.ndarray         # (classes,)
    accuracy_after: np.ndarray          # (classes,)
    logit_before: np.ndarray            # (classes,) mean logit of each class on its own images
    logit_after: np.ndarray
    random_accuracy_after: np.ndarray   # (random sets, classes)

    def drop(self) -> np.ndarray:
        return self.accuracy_before - self.accuracy_after

    def random_drop(self) -> np.ndarray:
        return self.accuracy_before[None, :] - self.random_accuracy_after

    def as_dict(self) -> dict:
        random = self.random_drop()
        return {"neurons": self.neurons, "method": self.method, "images": self.images, "held_out": self.held_out,
                "classes": [{"class": name, "accuracy_before": float(self.accuracy_before[c]),
                             "accuracy_after": float(self.accuracy_after[c]),
                             "logit_before": float(self.logit_before[c]), "logit_after": float(self.logit_after[c]),
                             "random_drop_mean": float(random[:, c].mean()) if len(random) else None,
                             "random_drop_std": float(random[:, c].std()) if len(random) else None}
                            for c, name in enumerate(self.class_names)]}


def ablation_images(run: PreparedRun, count: int, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Data set indices of `count` images outside the run's sample (or the run's own when it holds them all)."""
    outside = np.setdiff1d(np.arange(len(run.dataset)), run.indices)
    pool, held_out = (outside, True) if len(outside) else (run.indices, False)
    chosen = np.random.default_rng(seed).choice(pool, size=min(count, len(pool)), replace=False)
    return np.sort(chosen), held_out


def output_classes(run: PreparedRun) -> np.ndarray:
    """For each class of the data, the model output that predicts it."""
    names = run.dataset.class_names
    model_names = run.model.class_names
    if model_names and all(name in model_names for name in names):
        return np.array([model_names.index(name) for name in names])
    if model_names is None or len(model_names) == len(names):
        return np.arange(len(names))
    raise NeuroCartoError(f"the model's {len(model_names)} outputs do not name the data's classes "
                          f"({', '.join(names[:5])}…): accuracy per class cannot be measured")


class _Channels:
    """The chosen channels of each layer and the value each is set to."""

    def __init__(self, layers: list[Layer], neurons: np.ndarray, values: np.ndarray | None):
        offsets = neuron_offsets(layers)
        layer_of = neuron_layers(layers)
        self.by_layer = {}
        for index in np.unique(layer_of[neurons]):
            mine = np.sort(neurons[layer_of[neurons] == index])
            fill = np.zeros(len(mine), dtype=np.float32) if values is None else values[mine]
            self.by_layer[int(index)] = (torch.as_tensor(mine - offsets[index]), torch.as_tensor(fill))
        self.layers = layers

    def edit(self, index: int, tensor: torch.Tensor) -> torch.Tensor:
        if index not in self.by_layer:
            return tensor
        channels, fill = self.by_layer[index]
        layer, edited = self.layers[index], tensor.clone()
        fill = fill.to(tensor.device, tensor.dtype)
        if layer.layout == "nhwc":
            edited[..., channels] = fill
        elif layer.layout == "tokens":
            edited[:, layer.extra_tokens:, channels] = fill
        else:
            edited[:, channels] = fill[:, None, None]
        return edited


def _logits(run: PreparedRun, images: list[torch.Tensor], device, channels: _Channels | None = None,
            means: np.ndarray | None = None) -> torch.Tensor:
    """The model's outputs on the image batches, with `channels` edited; `means` (neurons,) filled with each
    channel's mean activation over these images."""
    model, layers = run.model.module.to(device).eval(), run.layers
    offsets = neuron_offsets(layers)
    involved = sorted(channels.by_layer) if channels is not None else list(range(len(layers)))

    def receive(index: int, maps: torch.Tensor) -> None:
        if means is not None:
            sums = maps.float().sum(dim=(0, 2, 3)).cpu().numpy()
            means[offsets[index]:offsets[index] + len(sums)] += sums / (maps.shape[2] * maps.shape[3])

    outputs = []
    with torch.inference_mode(), LayerCapture(model, layers, receive, involved,
                                              edit=None if channels is None else channels.edit):
        for batch in images:
            logits = model(batch.to(device))
            outputs.append((logits[0] if isinstance(logits, (tuple, list)) else logits).float().cpu())
    return torch.cat(outputs)


def ablate(run: PreparedRun, neurons: np.ndarray, method: str = "zero", n_images: int = 1000, random_sets: int = 5,
           seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 256) -> Ablation:
    """Ablate `neurons` (flat indices) and `random_sets` same-size sets of the same layers; see the module doc."""
    if method not in METHODS:
        raise NeuroCartoError(f"method {method!r}: valid: {', '.join(METHODS)}")
    neurons = np.unique(np.asarray(neurons, dtype=np.int64))
    if len(neurons) == 0:
        raise NeuroCartoError("no neurons to ablate: name at least one (layer:channel or layer:c<channel>)")
    targets = output_classes(run)
    indices, held_out = ablation_images(run, n_images, seed)
    labels = np.array([run.dataset.label(int(i)) for i in indices])
    transform = run.model.transform
    tensors = [transform(run.dataset.load(int(i))) for i in indices]
    batches = [torch.stack(tensors[s:s + batch_size]) for s in range(0, len(tensors), batch_size)]
    means = np.zeros(run.n_neurons, dtype=np.float64) if method == "mean" else None
    before = _logits(run, batches, device, means=means)
    values = None if means is None else (means / len(indices)).astype(np.float32)
    after = _logits(run, batches, device, _Channels(run.layers, neurons, values))
    layer_of = neuron_layers(run.layers)
    rng = np.random.default_rng(seed + 1)
    random_after = []
    for _ in range(random_sets):
        drawn = np.concatenate([rng.choice(np.setdiff1d(np.flatnonzero(layer_of == layer), neurons),
                                           size=int((layer_of[neurons] == layer).sum()), replace=False)
                                for layer in np.unique(layer_of[neurons])])
        random_after.append(_accuracy(_logits(run, batches, device, _Channels(run.layers, drawn, values)),
                                      labels, targets))
    ids = [f"{run.layers[layer_of[n]].name}:{n - neuron_offsets(run.layers)[layer_of[n]]}" for n in neurons]
    return Ablation(ids, method, len(indices), held_out, list(run.dataset.class_names), _accuracy(before, labels, targets),
                    _accuracy(after, labels, targets), _mean_logit(before, labels, targets),
                    _mean_logit(after, labels, targets), np.array(random_after).reshape(random_sets, len(targets)))


def _accuracy(logits: torch.Tensor, labels: np.ndarray, targets: np.ndarray) -> np.ndarray:
    predicted = logits.argmax(dim=1).numpy()
    return np.array([float((predicted[labels == c] == targets[c]).mean()) if (labels == c).any() else np.nan
                     for c in range(len(targets))])


def _mean_logit(logits: torch.Tensor, labels: np.ndarray, targets: np.ndarray) -> np.ndarray:
    values = logits.numpy()
    return np.array([float(values[labels == c, targets[c]].mean()) if (labels == c).any() else np.nan
                     for c in range(len(targets))])


def ablate_stored(run, items: list[str], method: str = "zero", n_images: int = 1000, random_sets: int = 5,
                  cut="auto", seed: int = 0, model=None, device: str = "cpu") -> Ablation:
    """`ablate` on a stored run (`StoredRun`): neuron ids and cluster ids (at `cut`) name the neurons; its model
    and data are loaded as its manifest names them (`model`: the nn.Module of a run made from a Python object)."""
    from dataclasses import replace

    from .config import ExecutionConfig, RunConfig
    from .models import from_module
    from .prepared_run import prepare

    neurons = np.unique(np.concatenate([run.members(item, cut) for item in items])) if items else np.array([])
    config = RunConfig.from_dict(run.config)
    loaded = None
    if run.manifest["model"]["spec"].startswith("python:"):
        if model is None:
            raise NeuroCartoError(f"run {run.name} was made from a Python model object ({run.manifest['model']['spec']}): "
                                  "pass it as run.ablate(..., model=module)")
        loaded = from_module(model)
        config = replace(config, model=loaded.spec)
    try:
        prepared = prepare(config, ExecutionConfig(cache=run.store.directory, progress=False), loaded)
    except NeuroCartoError as problem:
        raise NeuroCartoError(f"ablation needs run {run.name}'s model and data here: {problem}") from problem
    if prepared.key != run.key:
        raise NeuroCartoError(f"the model or data here differ from those run {run.name} was computed on (its key "
                              f"{run.key}, here {prepared.key}): ablate where its model, weights and data are")
    return ablate(prepared, neurons, method, n_images, random_sets, seed, device)


def format_ablation(result: Ablation, first: str | None = None) -> str:
    """A table: per class, accuracy before → after, the drop, random sets' drop (mean ± std) and their ratio."""
    order = list(range(len(result.class_names)))
    if first is not None:
        lowered = [name.lower() for name in result.class_names]
        if first.lower() not in lowered:
            raise NeuroCartoError(f"--class {first}: not a class of this run; classes: {', '.join(result.class_names)}")
        chosen = lowered.index(first.lower())
        order = [chosen] + [c for c in order if c != chosen]
    drop, random = result.drop(), result.random_drop()
    source = "held-out images" if result.held_out else "the run's own images (none is outside it)"
    lines = [f"ablated ({result.method}) {len(result.neurons)} neurons: {', '.join(result.neurons[:8])}"
             + (" …" if len(result.neurons) > 8 else ""),
             f"on {result.images} {source}; random: {len(random)} sets of the same size in the same layers",
             f"{'class':<16} {'accuracy':>17} {'drop':>7} {'random drop':>15} {'× random':>9}"]
    for c in order:
        mean = random[:, c].mean() if len(random) else np.nan
        spread = random[:, c].std() if len(random) else np.nan
        ratio = drop[c] / mean if mean > 1e-9 else np.inf if drop[c] > 1e-9 else np.nan
        lines.append(f"{result.class_names[c][:16]:<16} {result.accuracy_before[c]:>7.3f} → {result.accuracy_after[c]:.3f}"
                     f" {drop[c]:>+7.3f} {mean:>+8.3f} ± {spread:.3f} {ratio:>9.1f}")
    return "\n".join(lines)
