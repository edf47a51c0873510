"""The same run on the CPU and on a GPU: every stage's time, and how far their results agree.

    python benchmarks/device_parity.py --data FOLDER [--model googlenet] [--images 1000] [--image-size 224]
                                       [--device cuda]

Runs `precompute` (all stages) twice with one configuration, once with `--device cpu` and once with
--device, into two temporary caches, then compares what the stages stored: each neuron's top-k image
set (mean Jaccard between the two runs, share identical), the top activation values (largest relative
difference), the clustering (share of neuron pairs grouped alike), and the class graphs (same nodes;
largest edge-weight difference relative to each graph's strongest edge). A first run on --device,
not counted, pays numba's and the GPU's first-use costs. Floating-point sums differ
between the devices, so near-ties may swap places; the figures say how much that moves.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from neurocarto.compute.pipeline import precompute
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.inputs.prepared_run import prepare
from neurocarto.store.disk import Store

STAGES = ("pass1", "cluster", "embed", "graph", "patches")


def stored_results(config: RunConfig, device: str, cache: Path) -> tuple[dict, float, dict]:
    """Manifest, wall seconds and the arrays and graphs to compare, of one run on one device."""
    execution = ExecutionConfig(cache=cache, device=device, progress=False)
    started = time.perf_counter()
    manifest = precompute(config, execution, log=lambda _: None)
    wall = time.perf_counter() - started
    print(f"{device}: {wall:.1f} s, " + ", ".join(f"{stage} {manifest['stages'][stage]['seconds']:.1f} s"
                                              for stage in STAGES), flush=True)
    key = prepare(config, execution).key
    with Store(cache) as store:
        results = {name: store.get_array(key, name) for name in ("top_images", "top_values", "cluster_labels")}
        results["graphs"] = {label: store.get_json(key, f"graph/{label}")
                             for label in range(len(store.get_json(key, "class_names")))}
    return manifest, wall, results


def set_agreement(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Mean Jaccard of the rows' sets, and the share of rows whose sets are identical."""
    jaccard = np.array([len(np.intersect1d(a, b)) / len(np.union1d(a, b)) for a, b in zip(first, second)])
    return float(jaccard.mean()), float((jaccard == 1).mean())


def pair_agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Share of neuron pairs that both labelings put together, or both apart (Rand index)."""
    same_first = first[:, None] == first[None, :]
    same_second = second[:, None] == second[None, :]
    return float((same_first == same_second).mean())


def graph_agreement(first: dict, second: dict) -> tuple[float, float]:
    """Share of classes with the same node set, and the largest edge-weight difference relative to the
    strongest edge of its graph."""
    same_nodes, worst = 0, 0.0
    for label, graph in first.items():
        other = second[label]
        same_nodes += {node["id"] for node in graph["nodes"]} == {node["id"] for node in other["nodes"]}
        weights = {(edge["source"], edge["target"]): edge["weight"] for edge in graph["edges"]}
        others = {(edge["source"], edge["target"]): edge["weight"] for edge in other["edges"]}
        scale = max([abs(weight) for weight in weights.values()] + [1e-12])
        for edge in set(weights) | set(others):
            worst = max(worst, abs(weights.get(edge, 0.0) - others.get(edge, 0.0)) / scale)
    return same_nodes / max(len(first), 1), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="googlenet")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    import torch
    config = RunConfig(model=args.model, data=args.data, max_images=args.images, image_size=args.image_size)
    with tempfile.TemporaryDirectory() as temporary:
        (_, warm_up, _), (cpu_manifest, cpu_wall, cpu), (manifest, wall, other) = (
            stored_results(config, device, Path(temporary) / f"run{index}")
            for index, device in enumerate((args.device, "cpu", args.device)))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(f"{args.model}, {cpu_manifest['counts']['neurons']} neurons, {args.images} images at "
          f"{args.image_size}²; cpu = {torch.get_num_threads()} threads, {args.device} = {name}, "
          f"torch {torch.__version__}; first-use warm-up run {warm_up:.1f} s, not counted\n")
    print("| stage | cpu (s) | " + args.device + " (s) | speed-up |\n|---|---:|---:|---:|")
    for stage in STAGES:
        seconds_cpu, seconds = cpu_manifest["stages"][stage]["seconds"], manifest["stages"][stage]["seconds"]
        print(f"| {stage} | {seconds_cpu:.1f} | {seconds:.1f} | {seconds_cpu / max(seconds, 1e-9):.1f}× |")
    print(f"| all, wall | {cpu_wall:.1f} | {wall:.1f} | {cpu_wall / wall:.1f}× |\n")
    mean_jaccard, identical = set_agreement(cpu["top_images"], other["top_images"])
    values = np.abs(cpu["top_values"] - other["top_values"]).max() / max(np.abs(cpu["top_values"]).max(), 1e-12)
    same_nodes, edge_difference = graph_agreement(cpu["graphs"], other["graphs"])
    print("| agreement of the two runs | value |\n|---|---:|")
    print(f"| top-k image sets: mean Jaccard | {mean_jaccard:.4f} |")
    print(f"| top-k image sets: identical | {identical:.2%} |")
    print(f"| top activation values: largest relative difference | {values:.1e} |")
    print(f"| clusters: {cpu['cluster_labels'].max() + 1} vs {other['cluster_labels'].max() + 1}; "
          f"neuron pairs grouped alike | {pair_agreement(cpu['cluster_labels'], other['cluster_labels']):.4f} |")
    print(f"| class graphs with the same nodes | {same_nodes:.0%} |")
    print(f"| edge weights: largest difference ÷ strongest edge | {edge_difference:.1e} |")


if __name__ == "__main__":
    main()
