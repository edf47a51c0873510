"""Do explanations find the parts an image really has? Parts images the run never saw, explained one by one.

    python benchmarks/explain_faithfulness.py [--cache cache] [--images-per-class 50] [--concepts 3]

On the Parts run (`parts-inception` on `parts`, computed into the cache if it is not there), each held-out image
(the next seed's sample of the same distribution: its part maps are known) is explained and the predicted class's
graph lit by it. For its `--concepts` most lit nodes (and the first `--concepts` nodes of
the image's path, from the prediction down), each node's map on the image (its members' mean) peaks somewhere, and
the part under the peak is read as the run's part labels read it (`zoo.parts.part_under`: the peak's cell widened
by half a cell, its most common part):
- on a part: a part, not background, is under the peak;
- pointing game: the part under it is the node's own part (the part most of its members' top images show under
  their argmax), for nodes that have one.
The baseline in the same run is as many nodes drawn at random from the same graph, scored the same way.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import neurocarto as nc
from neurocarto.analysis.evaluate import held_out_spec
from neurocarto.analysis.explain import Explainer
from neurocarto.compute.pipeline import precompute
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.store.explanations import concept_map, lit_graph
from neurocarto.zoo.parts import CLASS_NAMES, PartsDataset, part_under


def node_part(run, members) -> int:
    """The part most of the members' top images show (0: background or none)."""
    counts = run.parts.counts(tuple(int(m) for m in members))
    return int(np.argmax(counts[1:]) + 1) if counts[1:].any() and counts[1:].max() >= counts[0] else 0


def scores(run, explained, nodes: list[dict], part_map: np.ndarray) -> tuple[list[bool], list[bool]]:
    """(peaks on a part, peaks on the node's own part — for nodes with one) of these nodes on the image."""
    on_part, pointing = [], []
    for node in nodes:
        layer = run.layers[int(run.layer_of[node["members"][0]])]
        heat = concept_map(explained, run.layers, run.layer_offsets, run.layer_of, node["members"],
                           (layer.height, layer.width))
        under = part_under(part_map, int(np.argmax(heat)), layer.height, layer.width)
        on_part.append(under != 0)
        own = node_part(run, node["members"])
        if own:
            pointing.append(under == own)
    return on_part, pointing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="cache")
    parser.add_argument("--images-per-class", type=int, default=50)
    parser.add_argument("--concepts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    manifest = precompute(RunConfig(model="parts-inception", data="parts"),
                          ExecutionConfig(cache=args.cache, progress=False), log=lambda _: None)
    run = nc.open_run(manifest["key"], cache=args.cache)
    held_out = PartsDataset.from_spec(held_out_spec(run.config["data"]))
    explainer, rng = Explainer(run), np.random.default_rng(args.seed)
    found = {"lit": ([], [], []), "path": ([], [], []), "random": ([], [], [])}
    started, count = time.perf_counter(), args.images_per_class * len(CLASS_NAMES)
    for index in range(count):
        image, part_map = held_out.load(index), held_out.part_map(index)
        explained = explainer.explain(image, keep=False)
        graph = lit_graph(run, explained)
        lit = sorted(graph["nodes"], key=lambda n: -n["value"])[:args.concepts]
        by_id = {node["id"]: node for node in graph["nodes"]}
        path = [by_id[n] for n in graph["path"]["nodes"][:args.concepts]]
        drawn = [graph["nodes"][i] for i in rng.choice(len(graph["nodes"]), size=len(lit), replace=False)]
        for name, nodes in (("lit", lit), ("path", path), ("random", drawn)):
            on_part, pointing = scores(run, explained, nodes, part_map)
            found[name][0].append(all(on_part))
            found[name][1].extend(on_part)
            found[name][2].extend(pointing)
    seconds = time.perf_counter() - started
    print(f"{count} held-out Parts images ({args.images_per_class} a class), {args.concepts} concepts each, "
          f"{seconds / count * 1000:.0f} ms an image")
    print("| concepts | images whose concepts all peak on a part | concepts peaking on a part | pointing game "
          "(on the concept's own part) |")
    print("|---|---:|---:|---:|")
    for name, label in (("lit", f"the {args.concepts} most lit"), ("path", f"the path's first {args.concepts}"),
                        ("random", f"{args.concepts} random (baseline)")):
        images, concepts, pointing = found[name]
        print(f"| {label} | {np.mean(images):.3f} | {np.mean(concepts):.3f} | {np.mean(pointing):.3f} "
              f"(of {len(pointing)}) |")


if __name__ == "__main__":
    main()
