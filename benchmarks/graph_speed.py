"""Class-graph stage against pass 1 of the same run, with closed-form one-conv feeds and without.

    python benchmarks/graph_speed.py [--default-images 70000] [--classes 50] [--per-class 20]
                                     [--old-classes 5] [--skip-default] [--skip-googlenet]

1. The default run (fashion-inception on --default-images Fashion-MNIST images): pass 1 and clustering
   into a temporary cache, then the graph stage twice in this process: as shipped (one-conv feeds in
   closed form, `conv_paths.py`) and with every feed through autograd (the all-autograd path). Prints
   graph ÷ pass 1 for both, the speed-up, CPU time in the kernel, and the largest relative
   difference of the two stages' edge weights.
2. googlenet's 25-block map at 224² (random weights, seeded) on generated JPEGs, --per-class images
   for each of --classes classes: pass 1 over them, then the graph stage (all classes) as shipped, and
   the first --old-classes classes both ways, for the per-class speed-up.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from imagenet_scale import _write_image

from neurocarto.compute import attribution, stages
from neurocarto.compute.contract import StageContext
from neurocarto.compute.pipeline import precompute
from neurocarto.concepts import concept_graph
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.inputs.prepared_run import prepare
from neurocarto.neurons import neuron_layers, neuron_offsets
from neurocarto.store.disk import Store


class AutogradOnly(attribution.FeedPaths):
    """The all-autograd path: every feed by autograd (no closed form, no cone)."""

    def __init__(self, model, layers, feeds, _calls, _traced=None):
        super().__init__(model, layers, feeds, None)


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def timed_graph_stage(config: RunConfig, execution: ExecutionConfig, autograd_only: bool,
                      classes: list[int] | None = None) -> tuple[float, float, dict]:
    """Wall seconds, share of CPU time in the kernel, and the graphs, of the graph stage (or of some classes)."""
    run = prepare(config, execution)
    shipped = attribution.FeedPaths
    attribution.FeedPaths = AutogradOnly if autograd_only else shipped
    try:
        with Store(execution.cache) as store:
            key = run.key
            user, system = cpu_seconds()
            started = time.perf_counter()
            if classes is None:
                stages.graph_stage(StageContext(run, store, execution, lambda _: None))
            else:
                _class_graphs(run, store, classes, execution)
            seconds = time.perf_counter() - started
            user_after, system_after = cpu_seconds()
            graphs = {label: store.get_json(key, f"graph/{label}") for label in (classes or range(
                len(store.get_json(key, "class_names"))))}
    finally:
        attribution.FeedPaths = shipped
    kernel = (system_after - system) / max(user_after - user + system_after - system, 1e-9)
    return seconds, kernel, graphs


def _class_graphs(run, store: Store, classes: list[int], execution: ExecutionConfig) -> None:
    """The graph stage restricted to some classes (the stage's own loop, on a subset)."""
    from neurocarto.inputs.capture import record_calls
    from neurocarto.inputs.feeding import feeding_map
    model = run.model.module
    inputs = {name: store.get_array(run.key, name) for name in ("class_matrix", "cluster_labels", "image_labels",
                                                                  "skipped")}
    feeds = feeding_map(model, run.layers)
    example = run.load_images(np.array([0]))
    paths = attribution.FeedPaths(model, run.layers, feeds, record_calls(model, example),
                            stages.graph_tracing(model, run.layers, example)[0])
    offsets, layer_of = neuron_offsets(run.layers), neuron_layers(run.layers)
    labels = inputs["cluster_labels"]
    for label in classes:
        ids = stages.class_image_ids(inputs["image_labels"], inputs["skipped"], label, None, 0)
        batches = lambda ids=ids: (run.load_images(ids[s:s + 64]) for s in range(0, len(ids), 64))  # noqa: E731
        chosen, weights, images = attribution.class_weights(model, run.layers, feeds, inputs["class_matrix"][label], batches,
                                                      "cpu", run.config.graph.top_fraction, paths)
        store.put_json(run.key, f"graph/{label}", concept_graph.class_graph_at(
            chosen, weights, images, [layer.name for layer in run.layers], offsets, layer_of, labels,
            concept_graph.cluster_anchors(labels, layer_of), run.config.graph.max_in_edges))


def edge_difference(first: dict, second: dict) -> float:
    """Largest relative difference of edge weights between two sets of graphs (same edges expected)."""
    worst = 0.0
    for label, graph_a in first.items():
        weights_a = {(e["source"], e["target"]): e["weight"] for e in graph_a["edges"]}
        weights_b = {(e["source"], e["target"]): e["weight"] for e in second[label]["edges"]}
        scale = max([abs(w) for w in weights_a.values()] + [1e-12])
        for edge in set(weights_a) | set(weights_b):
            worst = max(worst, abs(weights_a.get(edge, 0.0) - weights_b.get(edge, 0.0)) / scale)
    return worst


def compare(title: str, config: RunConfig, execution: ExecutionConfig, pass1_seconds: float,
            old_classes: list[int] | None) -> None:
    new_seconds, new_kernel, new_graphs = timed_graph_stage(config, execution, autograd_only=False)
    subset = old_classes
    if subset is not None:
        new_subset, _, new_subset_graphs = timed_graph_stage(config, execution, False, subset)
        old_seconds, old_kernel, old_graphs = timed_graph_stage(config, execution, True, subset)
        speedup = old_seconds / new_subset
        old_total = old_seconds * len(new_graphs) / len(subset)
        difference = edge_difference(new_subset_graphs, old_graphs)
        scope = f"(all-autograd path timed on {len(subset)} classes, scaled)"
    else:
        old_seconds, old_kernel, old_graphs = timed_graph_stage(config, execution, autograd_only=True)
        speedup, old_total, difference, scope = old_seconds / new_seconds, old_seconds, \
            edge_difference(new_graphs, old_graphs), ""
    print(f"| {title} | {pass1_seconds:.1f} | {new_seconds:.1f} | {new_seconds / pass1_seconds:.2f} | "
          f"{old_total:.1f} | {old_total / pass1_seconds:.2f} | {speedup:.1f}× {scope} | "
          f"{new_kernel:.0%} / {old_kernel:.0%} | {difference:.1e} |", flush=True)


def default_run(images: int, cache: Path) -> None:
    config = RunConfig(max_images=images)
    execution = ExecutionConfig(cache=cache, progress=False)
    manifest = precompute(config, execution, log=lambda _: None, stages=["pass1", "cluster"])
    compare(f"fashion-inception, {images} images", config, execution, manifest["stages"]["pass1"]["seconds"], None)


def googlenet_run(classes: int, per_class: int, old_classes: int, cache: Path, folder: Path) -> None:
    for label in range(classes):
        (folder / f"n{label:08d}").mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            _write_image((folder / f"n{label:08d}" / f"{index:04d}.JPEG", label * per_class + index))
    config = RunConfig(model="googlenet", data=str(folder), top_k=20)
    execution = ExecutionConfig(cache=cache, progress=False, batch_size=64)
    manifest = precompute(config, execution, log=lambda _: None, stages=["pass1", "cluster"])
    compare(f"googlenet 25 blocks 224², {classes}×{per_class} images", config, execution,
            manifest["stages"]["pass1"]["seconds"], list(range(old_classes)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--default-images", type=int, default=70000)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--old-classes", type=int, default=5)
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--skip-googlenet", action="store_true")
    args = parser.parse_args()
    print("| run | pass 1 (s) | graph (s) | graph ÷ pass 1 | all-autograd graph (s) | all-autograd ÷ pass 1 | speed-up | "
          "kernel CPU share (now / all-autograd) | max edge weight difference |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as temporary:
        if not args.skip_default:
            default_run(args.default_images, Path(temporary) / "default")
        if not args.skip_googlenet:
            googlenet_run(args.classes, args.per_class, args.old_classes, Path(temporary) / "googlenet",
                          Path(temporary) / "images")


if __name__ == "__main__":
    main()
