"""A class's concept graph at any cut of the hierarchy, from neuron-level weights (no torch).

The graph stage (`compute/attribution.py`) stores, per class, the neurons it chose (the top share of each layer by
the class matrix A) with their scores, and a neuron-level edge weight for every chosen upstream ×
chosen downstream neuron of each feed (mean gradient × activation). A cut's graph only groups them:
- Nodes: in each layer, the chosen neurons of one cluster form one node (score = mean A of the members
  present, members listed by descending A); a chosen neuron outside any cluster is a node alone. A
  cluster node's id names the cluster by its smallest member, `layer:c<channel>`, so the same neuron
  anchors a node at every cut; a lone neuron's id is `layer:<channel>`.
- Edges: a node-to-node weight is the sum of the neuron-level weights between their members; each
  target keeps its `max_in_edges` strongest positive edges.
The stage, the app (for every cut a user picks) and the export build graphs with these functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NEURON_DTYPE = np.dtype([("neuron", "<i8"), ("score", "<f8")])
WEIGHT_DTYPE = np.dtype([("source", "<i8"), ("target", "<i8"), ("weight", "<f4")])


@dataclass(frozen=True)
class Clustering:
    """The clusters at one cut: a label per neuron (−1: alone) and each neuron's cluster anchor."""

    labels: np.ndarray
    anchors: np.ndarray

    def members_of(self, label: int, layer_of: np.ndarray | None = None, layer: int | None = None) -> np.ndarray:
        """The cluster's members (in `layer` only, if given)."""
        inside = self.labels == label
        return np.flatnonzero(inside if layer is None else inside & (layer_of == layer))


def chosen_neurons(class_row: np.ndarray, layer_sizes: list[int], top_fraction: float,
                   max_neurons: int | None = None) -> np.ndarray:
    """The class's chosen neurons (NEURON_DTYPE): per layer in order, its top `top_fraction` by A (A > 0), at
    most `max_neurons` of them, by descending A."""
    chosen, offset = [], 0
    for size in layer_sizes:
        counts = class_row[offset:offset + size]
        top = max(1, math.ceil(top_fraction * size))
        order = np.argsort(-counts, kind="stable")[:top if max_neurons is None else min(top, max_neurons)]
        order = order[counts[order] > 0]
        chosen.append(np.rec.fromarrays([offset + order, counts[order].astype(np.float64)], dtype=NEURON_DTYPE))
        offset += size
    return np.concatenate(chosen) if chosen else np.empty(0, dtype=NEURON_DTYPE)


def cluster_anchors(labels: np.ndarray, layer_of: np.ndarray) -> np.ndarray:
    """Per neuron, the smallest member of its cluster in its layer (labels: −1 = alone: itself)."""
    anchors = np.arange(len(labels), dtype=np.int64)
    grouped = np.flatnonzero(labels >= 0)
    order = grouped[np.lexsort((grouped, layer_of[grouped], labels[grouped]))]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (labels[order][1:] != labels[order][:-1]) | (layer_of[order][1:] != layer_of[order][:-1])
    anchors[order] = order[np.flatnonzero(starts)[np.cumsum(starts) - 1]]
    return anchors


def class_nodes(chosen: np.ndarray, layer_names: list[str], layer_offsets: np.ndarray, layer_of: np.ndarray,
                labels: np.ndarray, anchors: np.ndarray, max_listed: int = 10) -> list[dict]:
    """Nodes of one class at the cut `labels` (and its `cluster_anchors`), per layer in order, by descending
    score."""
    groups: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for neuron, score in zip(chosen["neuron"].tolist(), chosen["score"].tolist()):
        label = int(labels[neuron])
        groups.setdefault((int(layer_of[neuron]), label if label >= 0 else -1 - neuron), []).append((-score, neuron))
    nodes = []
    for (layer, key), entries in groups.items():
        entries.sort()
        members = [neuron for _, neuron in entries]
        channel = int(anchors[members[0]] - layer_offsets[layer])
        name = f"c{channel}" if key >= 0 else str(channel)
        nodes.append({"id": f"{layer_names[layer]}:{name}", "layer": layer_names[layer], "layer_index": layer,
                      "cluster": key if key >= 0 else -1, "members": members, "listed": members[:max_listed],
                      "score": -sum(score for score, _ in entries) / len(entries)})
    return sorted(nodes, key=lambda node: (node["layer_index"], -node["score"], node["id"]))


def class_edges(nodes: list[dict], weights: np.ndarray, n_neurons: int, max_in_edges: int = 10) -> list[dict]:
    """Node-to-node edges: sums of the neuron-level `weights` (WEIGHT_DTYPE) between members, the strongest
    positive `max_in_edges` per target."""
    node_of = np.full(n_neurons, -1, dtype=np.int64)
    for index, node in enumerate(nodes):
        node_of[node["members"]] = index
    source, target = node_of[weights["source"]], node_of[weights["target"]]
    known = (source >= 0) & (target >= 0)
    pair = source[known] * len(nodes) + target[known]
    pairs, inverse = np.unique(pair, return_inverse=True)
    sums = np.bincount(inverse, weights=weights["weight"][known].astype(np.float64), minlength=len(pairs))
    incoming: dict[int, list[tuple[float, str]]] = {}
    for key, weight in zip(pairs.tolist(), sums.tolist()):
        if weight > 0:
            incoming.setdefault(key % len(nodes), []).append((-weight, nodes[key // len(nodes)]["id"]))
    edges = []
    for target_index, sources in sorted(incoming.items()):
        for weight, source_id in sorted(sources)[:max_in_edges]:
            edges.append({"source": source_id, "target": nodes[target_index]["id"], "weight": -weight})
    return edges


def class_graph_at(chosen: np.ndarray, weights: np.ndarray, images: int, layer_names: list[str],
                   layer_offsets: np.ndarray, layer_of: np.ndarray, labels: np.ndarray, anchors: np.ndarray,
                   max_in_edges: int = 10) -> dict:
    """One class's graph at a cut: {"nodes": [...], "edges": [...], "images": n}."""
    nodes = class_nodes(chosen, layer_names, layer_offsets, layer_of, labels, anchors)
    return {"nodes": nodes, "edges": class_edges(nodes, weights, len(layer_of), max_in_edges), "images": images}


def anchor_neuron(node_id: str, neuron_index) -> tuple[int | None, bool]:
    """The neuron a node id names, via `neuron_index(layer:channel)`, and whether the id names its cluster
    (`layer:c<channel>`) rather than the neuron alone (`layer:<channel>`)."""
    layer, _, name = node_id.rpartition(":")
    cluster = name.startswith("c")
    channel = name[1:] if cluster else name
    return (neuron_index(f"{layer}:{channel}") if channel.isdigit() else None), cluster


def node_holding(graph: dict, neuron: int, labels: np.ndarray, layer_of: np.ndarray, via_cluster: bool) -> dict | None:
    """The node of `graph` that holds `neuron` at the cut `labels`, or with `via_cluster`, the node of its
    cluster in its layer even if the class's graph lacks the neuron itself."""
    label, layer = int(labels[neuron]), int(layer_of[neuron])
    for node in graph["nodes"]:
        if node["layer_index"] == layer and (neuron in node["members"] or (
                via_cluster and label >= 0 and node["cluster"] == label)):
            return node
    return None


def typical_images(top_images: np.ndarray, image_labels: np.ndarray, neurons, layer_of: np.ndarray,
                   class_index: int, ranks: int, count: int) -> list[tuple[int, int, int]]:
    """The class's own images that most of `neurons` (its graph's) hold among their first `ranks` top images, most
    often held first (ties: the lower image id), at most `count`, each as (image, neuron, rank) naming the patch that
    shows it: the holder of the highest layer (its patch covers most of the image), then the best rank."""
    neurons = np.asarray(neurons, dtype=np.int64)
    ranks = min(ranks, top_images.shape[1])
    images = top_images[neurons, :ranks].ravel()
    holders = np.repeat(neurons, ranks)
    rank_of = np.tile(np.arange(ranks), len(neurons))
    own = (images >= 0) & (image_labels[np.clip(images, 0, None)] == class_index)
    images, holders, rank_of = images[own], holders[own], rank_of[own]
    if not len(images):
        return []
    found, held = np.unique(images, return_counts=True)
    chosen = found[np.lexsort((found, -held))][:count]
    best = np.lexsort((holders, rank_of, -layer_of[holders], images))      # per image: its best holder first
    _, first = np.unique(images[best], return_index=True)                  # aligned with `found`
    shown = best[first[np.searchsorted(found, chosen)]]
    return [(int(image), int(holders[i]), int(rank_of[i])) for image, i in zip(chosen, shown)]
