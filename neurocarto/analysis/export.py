"""`python -m neurocarto export`: a run in open formats (JSON, CSV, NPZ) for use outside the app.

Writes into OUT:
  manifest.json          the run's manifest (config, counts, per-stage timings)
  class_names.json       class index → name
  neurons.csv            id (layer:channel), layer, channel, cluster (−1: none), x, y (2D projection)
  top_images.npz         top_images, top_values, top_positions (neurons × k; image ids index
                         image_index, the dataset's own indices), image_index, image_labels
  class_matrix.npz       class_matrix (classes × neurons, Summit's counts A), class_mean_maxima
  clusters.json          per cluster: id, layer(s), member ids, mean within-cluster Jaccard,
                         number of distinct top images
  hierarchy.json         the concept hierarchy: every average-linkage merge down to the floor
                         (a, b: a neuron id or "merge:R", the group merge R made; similarity; size),
                         and the cut the clusters were read at (per layer: cut and size cap)
  embedding.npz          embedding (neurons × dims), projection (neurons × 2), neighbors and
                         neighbor_similarity (neurons × n, cosine, full dimension)
  graphs/CLASS.json      per class: nodes (id, layer, cluster, members, score) and edges
                         (source, target, weight)
Only stages that have run are written; the manifest says which.
"""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np

from neurocarto.errors import NeuroCartoError
from neurocarto.store import keys
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun


def export_run(store: Store, reference: str, out: Path) -> list[Path]:
    """Write the run named `reference` into `out`; returns the files written."""
    run = StoredRun(store, store.resolve(reference))
    run.require(keys.PASS1)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NeuroCartoError(f"--out {out}: cannot make this folder ({error.strerror}); name a folder, new or "
                              "existing, that you can write to") from error
    written: list[Path] = []

    def write_json(name: str, value) -> None:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=1))
        written.append(path)

    def write_npz(name: str, arrays: list[str]) -> None:
        np.savez_compressed(out / name, **{array: run.array(array) for array in arrays})
        written.append(out / name)

    write_json("manifest.json", run.manifest)
    write_json("class_names.json", run.class_names)
    write_npz("top_images.npz", [keys.TOP_IMAGES, keys.TOP_VALUES, keys.TOP_POSITIONS, keys.IMAGE_INDEX, keys.IMAGE_LABELS])
    write_npz("class_matrix.npz", [keys.CLASS_MATRIX, keys.CLASS_MEAN_MAXIMA])
    neuron_ids = run.neuron_ids
    labels = run.cluster_labels if run.done(keys.CLUSTER) else np.full(len(neuron_ids), -1)
    projection = run.projection if run.done(keys.EMBED) else None
    with open(out / "neurons.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "layer", "channel", "cluster", "x", "y"])
        for index, neuron in enumerate(neuron_ids):
            layer, _, channel = neuron.rpartition(":")
            x, y = (f"{projection[index, 0]:.5f}", f"{projection[index, 1]:.5f}") if projection is not None else ("", "")
            writer.writerow([neuron, layer, channel, int(labels[index]), x, y])
    written.append(out / "neurons.csv")
    if run.done(keys.CLUSTER):
        offsets, members, similarity, image_offsets = (run.array(name) for name in (
            keys.CLUSTER_OFFSETS, keys.CLUSTER_MEMBERS, keys.CLUSTER_SIMILARITY, keys.CLUSTER_IMAGE_OFFSETS))
        clusters = []
        for label in range(len(offsets) - 1):
            ids = [neuron_ids[n] for n in members[offsets[label]:offsets[label + 1]]]
            clusters.append({"id": label, "layers": sorted({n.rpartition(":")[0] for n in ids}), "members": ids,
                             "mean_jaccard": float(similarity[label]),
                             "top_images": int(image_offsets[label + 1] - image_offsets[label])})
        write_json("clusters.json", clusters)
        write_json("hierarchy.json", hierarchy(run))
    if run.done(keys.EMBED):
        write_npz("embedding.npz", [keys.EMBEDDING, keys.PROJECTION, keys.NEIGHBORS, keys.NEIGHBOR_SIMILARITY])
    if run.done(keys.GRAPH):
        for label, name in enumerate(run.class_names):
            graph = copy.deepcopy(run.graph(label))
            for node in graph["nodes"]:
                node["members"] = [neuron_ids[n] for n in node["members"]]
                node["listed"] = [neuron_ids[n] for n in node["listed"]]
            weights = run.class_weights(label)[1]
            graph["neuron_edges"] = [{"source": neuron_ids[s], "target": neuron_ids[t], "weight": float(w)}
                                     for s, t, w in zip(weights["source"], weights["target"], weights["weight"])]
            write_json(f"graphs/{label:04d}.json", {"class": name, **graph})
    return written


def hierarchy(run: StoredRun) -> dict:
    """The merge order and the cut of a clustered run, with readable ids."""
    merges, neuron_ids = run.merges, run.neuron_ids
    cuts, caps = run.array(keys.CLUSTER_CUTS), run.array(keys.CLUSTER_CAPS)
    params = run.config["cluster"]
    n = len(neuron_ids)

    def name(item: float) -> str:
        return neuron_ids[int(item)] if item < n else f"merge:{int(item) - n}"

    per_group = run.layer_names if params["per_layer"] else ["all layers"]
    return {"floor": params["floor"], "cut": "automatic" if params["threshold"] is None else params["threshold"],
            "cuts": {group: {"cut": float(cut), "largest_cluster": int(cap)} for group, cut, cap in zip(per_group, cuts, caps)},
            "merges": [{"a": name(a), "b": name(b), "similarity": float(similarity), "size": int(size)}
                       for a, b, similarity, size in merges]}
