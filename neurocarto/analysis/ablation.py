"""What a concept does to the prediction: its channels ablated on held-out images, against random sets.

Reads a prepared run (model, data, layers) and a set of neurons; gives, per class, accuracy and mean logit
before and after the neurons' channels are zeroed (or set to their mean activation), and the same for
`random_sets` random neuron sets of the same size in the same layers, so a drop can be read against chance.
Images are drawn (seeded) from the data set's images outside the run's sample, or from the run's own
images when the run holds them all (the result says which).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from neurocarto.analysis.rerun import prepared_for
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.capture import LayerCapture
from neurocarto.inputs.prepared_run import PreparedRun
from neurocarto.neurons import Layer, neuron_layers, neuron_offsets
from neurocarto.store.ablation_results import result_name, store_baseline, store_result, stored_baseline, stored_result

METHODS = ("zero", "mean")


def _check(neurons, method: str) -> None:
    """Refuse a request before any model or image is loaded."""
    if method not in METHODS:
        raise NeuroCartoError(f"method {method!r}: valid: {', '.join(METHODS)}")
    if neurons is not None and len(np.asarray(neurons)) == 0:
        raise NeuroCartoError("no neurons to ablate: name at least one (layer:channel or layer:c<channel>)")


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
                "random_accuracy_after": self.random_accuracy_after.tolist(),
                "classes": [{"class": name, "accuracy_before": float(self.accuracy_before[c]),
                             "accuracy_after": float(self.accuracy_after[c]),
                             "logit_before": float(self.logit_before[c]), "logit_after": float(self.logit_after[c]),
                             "random_drop_mean": float(random[:, c].mean()) if len(random) else None,
                             "random_drop_std": float(random[:, c].std()) if len(random) else None}
                            for c, name in enumerate(self.class_names)]}

    @classmethod
    def from_dict(cls, stored: dict) -> "Ablation":
        """The result `as_dict` wrote."""
        rows = stored["classes"]

        def column(name: str) -> np.ndarray:
            return np.array([row[name] for row in rows], dtype=np.float64)

        random = np.array(stored["random_accuracy_after"], dtype=np.float64).reshape(-1, len(rows))
        return cls(stored["neurons"], stored["method"], stored["images"], stored["held_out"],
                   [row["class"] for row in rows], column("accuracy_before"), column("accuracy_after"),
                   column("logit_before"), column("logit_after"), random)


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
            means: np.ndarray | None = None, tick: Callable[[], None] = lambda: None) -> torch.Tensor:
    """The model's outputs on the image batches, with `channels` edited; `means` (neurons,) filled with each
    channel's mean activation over these images; `tick` called after each batch."""
    model, layers = run.model.module.to(device).eval(), run.layers
    offsets = neuron_offsets(layers)
    involved = sorted(channels.by_layer) if channels is not None else (
        list(range(len(layers))) if means is not None else [])       # no layer is read for a plain forward pass

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
            tick()
    return torch.cat(outputs)


class AblationBench:
    """The images, labels and unablated outputs of one run, loaded once for any number of ablations.

    `progress(done, total)` is told of every forward batch, counted against one ablation's total (the unablated
    pass, the ablated one and one per random set). `baseline`: the unablated logits and, for "mean", the mean
    activations, as an earlier bench on the same images computed them (`.baseline`), so that pass is skipped."""

    def __init__(self, run: PreparedRun, method: str = "zero", n_images: int = 1000, random_sets: int = 5,
                 seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 256,
                 progress: Callable[[int, int], None] | None = None,
                 baseline: tuple[np.ndarray, np.ndarray | None] | None = None):
        _check(None, method)
        self.run, self.method, self.random_sets, self.seed, self.device = run, method, random_sets, seed, device
        self.targets = run.output_classes()
        indices, self.held_out = run.held_out_images(n_images, seed)
        self.labels = np.array([run.dataset.label(int(i)) for i in indices])
        tensors = [run.model.transform(run.dataset.load(int(i))) for i in indices]
        self.batches = [torch.stack(tensors[s:s + batch_size]) for s in range(0, len(tensors), batch_size)]
        passes = 1 + random_sets + (baseline is None)
        self._done, self._total, self._progress = 0, len(self.batches) * passes, progress
        if baseline is None:
            means = np.zeros(run.n_neurons, dtype=np.float64) if method == "mean" else None
            self.before = _logits(run, self.batches, device, means=means, tick=self._tick)
            self.values = None if means is None else (means / len(indices)).astype(np.float32)
        else:
            self.before, self.values = torch.from_numpy(baseline[0]), baseline[1]
        self.layer_of = neuron_layers(run.layers)

    @property
    def baseline(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.before.numpy(), self.values

    def accuracy(self, neurons: np.ndarray | None = None) -> np.ndarray:
        """(classes,) accuracy with `neurons` ablated (none: as the model is)."""
        return _accuracy(self.logits(neurons), self.labels, self.targets)

    def _tick(self) -> None:
        self._done += 1
        if self._progress is not None:
            self._progress(min(self._done, self._total), self._total)

    def logits(self, neurons: np.ndarray | None = None) -> torch.Tensor:
        if neurons is None:
            return self.before
        return _logits(self.run, self.batches, self.device, _Channels(self.run.layers, neurons, self.values),
                       tick=self._tick)

    def random_like(self, neurons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """As many neurons in each of the same layers, none of `neurons`, drawn at random."""
        layer_of = self.layer_of
        return np.concatenate([rng.choice(np.setdiff1d(np.flatnonzero(layer_of == layer), neurons),
                                          size=int((layer_of[neurons] == layer).sum()), replace=False)
                               for layer in np.unique(layer_of[neurons])])

    def ablate(self, neurons: np.ndarray) -> Ablation:
        neurons = np.unique(np.asarray(neurons, dtype=np.int64))
        _check(neurons, self.method)
        after = self.logits(neurons)
        rng = np.random.default_rng(self.seed + 1)
        random_after = [self.accuracy(self.random_like(neurons, rng)) for _ in range(self.random_sets)]
        offsets, layers = neuron_offsets(self.run.layers), self.run.layers
        ids = [f"{layers[self.layer_of[n]].name}:{n - offsets[self.layer_of[n]]}" for n in neurons]
        labels, targets = self.labels, self.targets
        return Ablation(ids, self.method, len(labels), self.held_out, list(self.run.dataset.class_names),
                        _accuracy(self.before, labels, targets), _accuracy(after, labels, targets),
                        _mean_logit(self.before, labels, targets), _mean_logit(after, labels, targets),
                        np.array(random_after).reshape(self.random_sets, len(targets)))


def ablate(run: PreparedRun, neurons: np.ndarray, method: str = "zero", n_images: int = 1000, random_sets: int = 5,
           seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 256,
           progress: Callable[[int, int], None] | None = None) -> Ablation:
    """Ablate `neurons` (flat indices) and `random_sets` same-size sets of the same layers; see the module doc."""
    _check(neurons, method)
    return AblationBench(run, method, n_images, random_sets, seed, device, batch_size, progress).ablate(neurons)


def _accuracy(logits: torch.Tensor, labels: np.ndarray, targets: np.ndarray) -> np.ndarray:
    predicted = logits.argmax(dim=1).numpy()
    return np.array([float((predicted[labels == c] == targets[c]).mean()) if (labels == c).any() else np.nan
                     for c in range(len(targets))])


def _mean_logit(logits: torch.Tensor, labels: np.ndarray, targets: np.ndarray) -> np.ndarray:
    values = logits.numpy()
    return np.array([float(values[labels == c, targets[c]].mean()) if (labels == c).any() else np.nan
                     for c in range(len(targets))])


def ablate_stored(run, items: list[str], method: str = "zero", n_images: int = 1000, random_sets: int = 5,
                  cut="auto", seed: int = 0, model=None, device: str = "cpu",
                  progress: Callable[[int, int], None] | None = None) -> Ablation:
    """`ablate` on a stored run (`StoredRun`): neuron ids and cluster ids (at `cut`) name the neurons."""
    neurons = np.unique(np.concatenate([run.members(item, cut) for item in items])) if items else np.array([])
    return ablate_run_neurons(run, neurons, method, n_images, random_sets, seed, model, device, progress)


def ablate_run_neurons(run, neurons: np.ndarray, method: str = "zero", n_images: int = 1000, random_sets: int = 5,
                       seed: int = 0, model=None, device: str = "cpu",
                       progress: Callable[[int, int], None] | None = None) -> Ablation:
    """`ablate` of a stored run's neurons (flat indices). The result is kept in the run's store
    (`ablation_results`), and read from there when the same ablation is asked again."""
    neurons = np.unique(np.asarray(neurons, dtype=np.int64))
    _check(neurons, method)
    name = result_name(neurons, method, n_images, random_sets, seed)
    stored = stored_result(run, name)
    if stored is not None:
        return Ablation.from_dict(stored)
    result = _stored_run_bench(run, method, n_images, random_sets, seed, model, device, progress).ablate(neurons)
    store_result(run, name, result.as_dict())
    return result


def _stored_run_bench(run, method: str, n_images: int, random_sets: int, seed: int, model, device,
                      progress=None) -> AblationBench:
    """A bench on a stored run's model and data whose unablated pass is read from the run's store, or computed
    and kept there: every ablation of the run on the same images shares it."""
    baseline = stored_baseline(run, method, n_images, seed)
    bench = AblationBench(prepared_for(run, model, "ablation"), method, n_images, random_sets, seed, device, progress=progress,
                          baseline=baseline)
    if baseline is None:
        store_baseline(run, method, n_images, seed, *bench.baseline)
    return bench


def causal_scores(run, top_nodes: int = 3, n_images: int = 1000, random_sets: int = 5, seed: int = 0,
                  method: str = "zero", model=None, device: str = "cpu") -> dict:
    """Per class, its graph's `top_nodes` best nodes ablated together: the class's accuracy drop, the other classes'
    mean drop (specificity) and the mean drop of random same-size sets of the same layers; how many classes drop
    at least 3× more than random."""
    bench = _stored_run_bench(run, method, n_images, random_sets, seed, model, device)
    rows = []
    for c, name in enumerate(run.class_names):
        nodes = sorted(run.graph(c)["nodes"], key=lambda node: -node["score"])[:top_nodes]
        result = bench.ablate(np.unique(np.concatenate([node["members"] for node in nodes])))
        drop, random = result.drop(), result.random_drop()[:, c]
        own, others, chance = float(drop[c]), float(np.nanmean(np.delete(drop, c))), float(random.mean())
        rows.append({"class": name, "nodes": [node["id"] for node in nodes], "neurons": len(result.neurons),
                     "accuracy_before": float(result.accuracy_before[c]), "drop": own, "other_classes_drop": others,
                     "random_drop": chance, "random_drop_std": float(random.std()),
                     "specific": own > others, "three_times_random": own > 0 and own >= 3 * max(chance, 0.0)})
    return {"top_nodes": top_nodes, "images": len(bench.labels), "held_out": bench.held_out, "method": method,
            "random_sets": random_sets, "classes": rows,
            "three_times_random": sum(row["three_times_random"] for row in rows),
            "specific": sum(row["specific"] for row in rows)}


def format_causal(scores: dict) -> str:
    source = "held-out images" if scores["held_out"] else "the run's own images (none is outside it)"
    lines = [f"Causal test: each class's top {scores['top_nodes']} graph nodes ablated ({scores['method']}) on "
             f"{scores['images']} {source}; random: {scores['random_sets']} same-size sets of the same layers",
             "| class | neurons | accuracy | drop | other classes' drop | random drop | ≥ 3× random |",
             "|---|---:|---:|---:|---:|---:|:---:|"]
    for row in scores["classes"]:
        lines.append(f"| {row['class']} | {row['neurons']} | {row['accuracy_before']:.3f} | {row['drop']:+.3f} | "
                     f"{row['other_classes_drop']:+.3f} | {row['random_drop']:+.3f} ± {row['random_drop_std']:.3f} | "
                     f"{'yes' if row['three_times_random'] else 'no'} |")
    lines.append(f"{scores['three_times_random']} of {len(scores['classes'])} classes drop ≥ 3× more than random sets; "
                 f"{scores['specific']} drop more than the other classes do")
    return "\n".join(lines)


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
