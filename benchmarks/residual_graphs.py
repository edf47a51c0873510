"""The class-graph stage on residual and squeeze-excitation networks against pass 1 of the same run.

    python benchmarks/residual_graphs.py --data FOLDER [--models resnet50,timm:efficientnet_b0,...]
                                         [--images-per-class 100] [--size 224] [--device cpu]

Per model (random weights, seeded; `timm:NAME` builds timm's NAME through a file factory): pass 1 and
clustering into a temporary cache, then in this process
- the graph stage as shipped (feeds in closed form or along their gradient cones, at most
  --graph-max-neurons neurons a layer), all classes;
- the all-autograd path (every feed by autograd, every neuron of each layer's top 10 %) on the first class,
  scaled to all classes;
- the agreement of the shipped edge weights with all-autograd ones for the same neurons on the first
  class: the share of downstream neurons whose in-edges are equal (within 0.1 % of the largest), and the
  mean and smallest rank correlation of the in-edges of the others.
Prints one markdown row per model, and how the stage computed its feeds.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from graph_speed import AutogradOnly
from model_matrix import TIMM_FACTORY

from neurocarto.compute import attribution, stages
from neurocarto.compute.contract import StageContext
from neurocarto.compute.pipeline import precompute
from neurocarto.config import ExecutionConfig, GraphParams, RunConfig
from neurocarto.inputs.capture import record_calls
from neurocarto.inputs.feeding import feeding_map
from neurocarto.inputs.prepared_run import prepare, resolve_device
from neurocarto.store.disk import Store

DEFAULT_MODELS = "timm:mobilenetv3_large_100,timm:efficientnet_b0,timm:resnet26d,resnet50,convnext_tiny"


def model_spec(name: str, classes: int, folder: Path) -> str:
    if not name.startswith("timm:"):
        return name
    factory = folder / f"timm_{name[5:]}.py"
    factory.write_text(TIMM_FACTORY.format(name=name[5:], classes=classes))
    return f"{factory}:make"


def class_batches(run, store, label: int, batch_size: int = 64):
    ids = stages.class_image_ids(store.get_array(run.key, "image_labels"), store.get_array(run.key, "skipped"),
                                 label, None, 0)
    return lambda: (run.load_images(ids[s:s + batch_size]) for s in range(0, len(ids), batch_size))


def agreement(shipped: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """Share of downstream neurons with equal in-edges; mean and smallest rank correlation of the others'."""
    edges: dict = {}
    for column, weights in enumerate((shipped, reference)):
        for source, target, weight in weights:
            edges.setdefault(int(target), {}).setdefault(int(source), [0.0, 0.0])[column] = weight
    exact, correlations = 0, []
    for sources in edges.values():
        got, expected = np.array(list(sources.values())).T
        if np.abs(got - expected).max() <= 1e-3 * max(np.abs(expected).max(), 1e-12):
            exact += 1
        elif len(got) >= 3:
            correlations.append(np.corrcoef(np.argsort(np.argsort(got)), np.argsort(np.argsort(expected)))[0, 1])
    return (exact / max(len(edges), 1), float(np.mean(correlations)) if correlations else 1.0,
            float(np.min(correlations)) if correlations else 1.0)


def one_model(name: str, data: str, per_class: int, size: int, device: str, max_neurons: int, work: Path) -> str:
    classes = sum(1 for path in Path(data).iterdir() if path.is_dir())
    config = RunConfig(model=model_spec(name, classes, work), data=data, image_size=size,
                       max_images=per_class * classes, graph=GraphParams(max_neurons=max_neurons))
    execution = ExecutionConfig(cache=work / "cache", device=device, progress=False, batch_size=32)
    manifest = precompute(config, execution, log=lambda _: None, stages=["pass1", "cluster"])
    pass1 = manifest["stages"]["pass1"]["seconds"]
    run = prepare(config, execution)
    model = run.model.module.to(resolve_device(device))
    with Store(execution.cache) as store:
        started = time.perf_counter()
        details = stages.graph_stage(StageContext(run, store, execution, lambda _: None))
        shipped_seconds = time.perf_counter() - started
        feeds = feeding_map(model, run.layers)
        row = store.get_array(run.key, "class_matrix")[0]
        batches = class_batches(run, store, 0)
        example = run.load_images(np.array([0]))
        traced, _ = stages.graph_tracing(model, run.layers, example)
        paths = attribution.FeedPaths(model, run.layers, feeds, record_calls(model, example), traced)
        _, fast, _ = attribution.class_weights(model, run.layers, feeds, row, batches, device, 0.1, paths, max_neurons)
        _, slow, _ = attribution.class_weights(model, run.layers, feeds, row, batches, device, 0.1,
                                         AutogradOnly(model, run.layers, feeds, None), max_neurons)
        started = time.perf_counter()
        attribution.class_weights(model, run.layers, feeds, row, batches, device, 0.1,
                            AutogradOnly(model, run.layers, feeds, None), None)
        autograd_only = (time.perf_counter() - started) * classes
    equal, mean_rank, min_rank = agreement(fast, slow)
    methods = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in details["feed_methods"].items() if count)
    print(f"  {name}: feeds {methods}; {details.get('untraced') or 'traced'}; approximate cones' errors "
          f"{details['approximate_errors'][:3]}", file=sys.stderr, flush=True)
    return (f"| {name} | {size}² | {per_class * classes} | {pass1:.1f} | {shipped_seconds:.1f} | "
            f"{shipped_seconds / pass1:.2f} | {details['seconds_per_class']['mean']:.2f} | {autograd_only:.0f} | "
            f"{autograd_only / pass1:.1f} | {autograd_only / shipped_seconds:.0f}× | {equal:.0%} | {mean_rank:.3f} / {min_rank:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="an image folder with one folder per class")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--graph-max-neurons", type=int, default=GraphParams.max_neurons)
    args = parser.parse_args()
    print("| model | input | images | pass 1 (s) | graph (s) | graph ÷ pass 1 | s a class | all-autograd graph (s) | "
          "all-autograd ÷ pass 1 | speed-up | in-edges equal | rank corr. of the rest (mean / min) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as work:
            print(one_model(name.strip(), args.data, args.images_per_class, args.size, args.device,
                            args.graph_max_neurons, Path(work)), flush=True)


if __name__ == "__main__":
    main()
