"""What the app shows of one run, read once through the store; per-class graphs and the clusters at any cut
of the concept hierarchy on demand."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .. import cluster, concept_graph, hierarchy
from ..errors import NeuroCartoError
from ..patch_images import unpack
from ..store import Store

REQUIRED_STAGES = ("pass1", "cluster", "embed", "graph", "patches")
AUTO = "auto"               # the run's own cut: each layer's default from the cluster stage
MAX_CUT = 0.6               # the finest uniform cut the app offers


@dataclass(frozen=True)
class Clustering:
    """The clusters at one cut: a label per neuron (−1: alone) and each neuron's cluster anchor."""

    labels: np.ndarray
    anchors: np.ndarray

    def members_of(self, label: int, layer_of: np.ndarray | None = None, layer: int | None = None) -> np.ndarray:
        """The cluster's members (in `layer` only, if given)."""
        inside = self.labels == label
        return np.flatnonzero(inside if layer is None else inside & (layer_of == layer))


class PartLabels:
    """On Parts data, which part each neuron's top images show under its argmax (`zoo.parts.part_counts`),
    computed for the neurons asked about, once."""

    def __init__(self, spec: str, image_index: np.ndarray, top_images: np.ndarray, top_values: np.ndarray,
                 top_positions: np.ndarray, grids: list[tuple[int, int]]):
        from ..zoo.parts import PART_NAMES, PartsDataset

        dataset = PartsDataset.from_spec(spec)
        self.names = PART_NAMES
        self._map = lru_cache(maxsize=4096)(lambda image: dataset.part_map(int(image_index[image])))
        self._arrays = (top_images, top_values, top_positions)
        self._grids = grids
        self._counts: dict[int, np.ndarray] = {}

    def counts(self, neurons: tuple[int, ...]) -> np.ndarray:
        """Summed over these neurons: how many top images show each part."""
        from ..zoo.parts import part_counts

        missing = [n for n in neurons if n not in self._counts]
        if missing:
            images, values, positions = (array[missing] for array in self._arrays)
            found = part_counts(images, values, positions, [self._grids[n] for n in missing], self._map, len(self.names))
            self._counts.update(zip(missing, found))
        return np.sum([self._counts[n] for n in neurons], axis=0)


def parse_cut(text, floor: float) -> str | float:
    """A cut from a URL or a flag: "auto", or a Jaccard threshold in [floor, MAX_CUT] (rounded to 0.01)."""
    if text is None or str(text).strip().lower() == AUTO:
        return AUTO
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not floor <= value <= MAX_CUT:
        raise NeuroCartoError(f"cut must be “auto” or a Jaccard threshold from {floor:g} to {MAX_CUT:g}, not “{text}”")
    return round(value, 2)


@dataclass
class RunData:
    """A complete run's arrays for the views; neurons are flat indices, shown as `layer:channel`."""

    key: str
    name: str
    label: str
    neuron_ids: list[str]
    layer_names: list[str]
    layer_of: np.ndarray            # (neurons,) layer index
    class_names: list[str]
    projection: np.ndarray          # (neurons, 2)
    neighbors: np.ndarray           # (neurons, n) full-dimensional cosine neighbours
    cluster_labels: np.ndarray      # (neurons,) at the run's own cut
    merges: np.ndarray              # the concept hierarchy's merge rows (hierarchy.linkage_merges)
    merge_caps: np.ndarray          # (merges,) largest cluster each row may make
    layer_cuts: np.ndarray          # (layers,) the run's own cut of each layer
    floor: float                    # lowest cut the hierarchy holds
    top_images: np.ndarray          # (neurons, k) run image ids
    top_sets: np.ndarray            # (neurons, k) top images as clustering compares them (cluster.clustering_sets)
    image_labels: np.ndarray        # (images,) class of each run image
    patch_count: int
    max_in_edges: int
    parts: PartLabels | None = field(repr=False, default=None)     # Parts data: labels name parts, not classes
    _store: Store = field(repr=False, default=None)

    def neuron_index(self, neuron_id: str) -> int | None:
        try:
            return self._index[neuron_id]
        except KeyError:
            return None

    def __post_init__(self) -> None:
        self._index = {neuron: i for i, neuron in enumerate(self.neuron_ids)}
        sizes = np.bincount(self.layer_of, minlength=len(self.layer_names))
        self.layer_offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.cuttable = self._store is not None and self._store.has_array(self.key, "graph_weights/0")
        self._cached_graph = lru_cache(maxsize=64)(self._graph)
        self.clustering = lru_cache(maxsize=16)(self._clustering)
        self.cluster_similarity = lru_cache(maxsize=1024)(self._cluster_similarity)
        self._class_weights = lru_cache(maxsize=32)(self._read_class_weights)
        self._label = lru_cache(maxsize=16384)(self._read_label)
        self.patches = lru_cache(maxsize=4096)(self._patches)

    def _clustering(self, cut: str | float) -> Clustering:
        labels = self.cluster_labels if cut == AUTO else hierarchy.cut_labels(
            len(self.neuron_ids), self.merges, float(cut), self.merge_caps)
        return Clustering(labels, concept_graph.cluster_anchors(labels, self.layer_of))

    def _read_class_weights(self, class_index: int) -> tuple[np.ndarray, np.ndarray]:
        return (self._store.get_array(self.key, f"graph_neurons/{class_index}"),
                self._store.get_array(self.key, f"graph_weights/{class_index}"))

    def graph(self, class_index: int, cut: str | float = AUTO) -> dict:
        """The class's graph at a cut: as stored for the run's own cut, else regrouped from the stored
        neuron-level weights (a run without them has its own cut only)."""
        return self._cached_graph(int(class_index), cut)

    def _graph(self, class_index: int, cut: str | float) -> dict:
        stored = self._store.get_json(self.key, f"graph/{class_index}")
        if cut == AUTO or not self.cuttable:
            return stored
        chosen, weights = self._class_weights(class_index)
        clustering = self.clustering(cut)
        return concept_graph.class_graph_at(chosen, weights, stored["images"], self.layer_names, self.layer_offsets,
                                            self.layer_of, clustering.labels, clustering.anchors, self.max_in_edges)

    def _cluster_similarity(self, cut: str | float, label: int, layer: int) -> tuple[int, float]:
        """A cluster's size and mean pairwise Jaccard of its members' top images."""
        members = self.clustering(cut).members_of(label, self.layer_of, layer)
        first, second = np.triu_indices(len(members), k=1)
        similarity = cluster.pair_jaccard(self.top_sets, members[first], members[second]).mean() if len(first) else 0.0
        return len(members), float(similarity)

    def resolve_nodes(self, graph: dict, node_ids: list[str], cut: str | float) -> list[dict]:
        """The nodes of `graph` that hold the neurons these ids name (ids of any cut), without repeats."""
        labels, found, seen = self.clustering(cut).labels, [], set()
        for node_id in node_ids:
            neuron, via_cluster = concept_graph.anchor_neuron(node_id, self.neuron_index)
            node = None if neuron is None else concept_graph.node_holding(graph, neuron, labels, self.layer_of,
                                                                          via_cluster)
            if node is not None and node["id"] not in seen:
                seen.add(node["id"])
                found.append(node)
        return found

    def cut_range(self) -> str:
        """The run's own cut in words: one value, or the range over layers."""
        low, high = float(self.layer_cuts.min()), float(self.layer_cuts.max())
        return f"{low:.2f}" if math.isclose(low, high, abs_tol=0.005) else f"{low:.2f}–{high:.2f}"

    def _patches(self, neuron: int) -> tuple[bytes, ...]:
        return tuple(unpack(self._store.get_bytes(self.key, f"patches/{neuron}")))

    def top_image_classes(self, neurons: list[int]) -> np.ndarray:
        """How many of these neurons' top images come from each class."""
        images = np.unique(self.top_images[neurons])
        return np.bincount(self.image_labels[images], minlength=len(self.class_names))

    def concept_label(self, neurons) -> str:
        """What neurons detect, in words: the class most of their top images come from, or on Parts data the part
        most of them show under the argmax, and its share."""
        return self._label(tuple(int(n) for n in neurons))

    def _read_label(self, neurons: tuple[int, ...]) -> str:
        counts, names = (self.parts.counts(neurons), self.parts.names) if self.parts else (
            self.top_image_classes(list(neurons)), self.class_names)
        top = int(np.argmax(counts))
        name = names[top]
        return f"{name if len(name) <= 10 else name[:9] + '…'} {counts[top] / max(counts.sum(), 1):.0%}"

    def class_index(self, name: str) -> int | None:
        lowered = [c.lower() for c in self.class_names]
        return lowered.index(name.lower()) if name.lower() in lowered else None


def complete_runs(store: Store) -> list[tuple[str, dict]]:
    """(key, manifest) of every run whose every stage is done with its present inputs, newest first."""
    runs = [(key, manifest) for key, manifest, _ in store.list_runs()
            if manifest and manifest.get("complete")
            and all(manifest["stages"].get(s, {}).get("status") == "done" for s in REQUIRED_STAGES)]
    return sorted(runs, key=lambda item: item[1].get("created", ""), reverse=True)


def run_label(manifest: dict) -> str:
    return (f"{manifest['name']} — {manifest['model']['spec']} × {manifest['data']['kind']} "
            f"({manifest['counts']['images']:,} images, {manifest['counts']['neurons']:,} neurons)")


def load_run(store: Store, key: str) -> RunData:
    manifest = store.manifest(key)
    if manifest is None or not all(manifest["stages"].get(s, {}).get("status") == "done" for s in REQUIRED_STAGES):
        raise NeuroCartoError(f"run {key} is not complete: finish it with `python -m neurocarto precompute`")
    layers = manifest["layers"]
    layer_of = np.repeat(np.arange(len(layers)), [layer["channels"] for layer in layers])
    cluster_config = manifest["config"].get("cluster", {})
    groups = layer_of if cluster_config.get("per_layer", True) else np.zeros_like(layer_of)
    merges = store.get_array(key, "cluster_merges")
    cuts = store.get_array(key, "cluster_cuts")
    top_images, image_labels = store.get_array(key, "top_images"), store.get_array(key, "image_labels")
    data_spec = manifest["config"].get("data") or ""
    parts = PartLabels(data_spec, store.get_array(key, "image_index"), top_images, store.get_array(key, "top_values"),
                       store.get_array(key, "top_positions"),
                       [(layers[i]["height"], layers[i]["width"]) for i in layer_of]) if data_spec.startswith(
                           "parts") else None
    return RunData(
        key=key, name=manifest["name"], label=run_label(manifest),
        neuron_ids=store.get_json(key, "neuron_ids"),
        layer_names=[layer["name"] for layer in layers],
        layer_of=layer_of,
        class_names=store.get_json(key, "class_names"),
        projection=store.get_array(key, "projection"),
        neighbors=store.get_array(key, "neighbors"),
        cluster_labels=store.get_array(key, "cluster_labels"),
        merges=merges,
        merge_caps=store.get_array(key, "cluster_caps")[hierarchy.merge_groups(len(layer_of), merges, groups)],
        layer_cuts=cuts[groups[layer_of.searchsorted(np.arange(len(layers)))]] if len(layer_of) else cuts,
        floor=float(cluster_config.get("floor", 0.05)),
        top_images=top_images,
        top_sets=cluster.clustering_sets(top_images, store.get_array(key, "top_values"), len(image_labels)),
        image_labels=image_labels,
        patch_count=int(manifest["config"]["patches"]["per_neuron"]),
        max_in_edges=int(manifest["config"].get("graph", {}).get("max_in_edges", 10)),
        parts=parts,
        _store=store,
    )
