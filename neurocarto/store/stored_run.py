"""A run as stored: the one reader of a run's results, for the app, export, evaluation, the CLI and notebooks.

    import neurocarto as nc
    run = nc.open_run("fashion-inception-fashion-mnist-70000", cache="cache")
    run.clusters[:3], run.neighbors("mixed4b:c3", k=10), run.graph("Sneaker"), run.patches("mixed4b:0")

Everything is read lazily and once: opening a run reads its manifest only. Neurons are flat indices
(layer order, then channel) named `layer:channel`; a cluster is named by its smallest member,
`layer:c<channel>`. A result of a stage that has not run raises NeuroCartoError naming the stage.
Torch-free.
"""
from __future__ import annotations

import io
import json
import math
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from neurocarto.concepts import cluster, concept_graph, embed, hierarchy
from neurocarto.concepts.hierarchy import AUTO, parse_cut
from neurocarto.errors import NeuroCartoError, suggest
from neurocarto.neurons import Layer, neuron_ids, neuron_layers, neuron_offsets
from neurocarto.store import keys
from neurocarto.store.disk import Store
from neurocarto.store.patch_images import unpack


def skipped_images(manifest: dict) -> tuple[int, list[str]]:
    """How many of the run's images could not be read, and the first of them by name."""
    pass1 = manifest["stages"].get(keys.PASS1, {})
    return int(pass1.get("skipped", 0)), list(pass1.get("skipped_files", []))


def run_label(manifest: dict) -> str:
    return (f"{manifest['name']} — {manifest['model']['spec']} × {manifest['data']['kind']} "
            f"({manifest['counts']['images']:,} images, {manifest['counts']['neurons']:,} neurons)")


class Cluster(NamedTuple):
    id: str                 # layer:c<smallest member's channel>
    layer: str
    members: list[str]      # neuron ids
    mean_jaccard: float     # mean pairwise Jaccard of the members' top images


class Neighbor(NamedTuple):
    id: str
    similarity: float       # cosine of the embedding vectors


class StoredRun:
    """One run of the store, read on demand; `nc.open_run` opens one by name or key."""

    def __init__(self, store: Store, key: str, manifest: dict | None = None):
        self.store, self.key = store, key
        self.manifest = manifest if manifest is not None else store.manifest(key)
        if self.manifest is None:
            raise NeuroCartoError(f"run {key}: the store has no manifest for it")
        self.name: str = self.manifest["name"]
        self.config: dict = self.manifest["config"]
        self.label = run_label(self.manifest)
        self._graph_at = lru_cache(maxsize=64)(self._read_graph)
        self.clustering = lru_cache(maxsize=16)(self._clustering)
        self.cluster_similarity = lru_cache(maxsize=1024)(self._cluster_similarity)
        self.class_weights = lru_cache(maxsize=32)(self._read_class_weights)
        self._label = lru_cache(maxsize=16384)(self._read_label)
        self.patch_pngs = lru_cache(maxsize=4096)(self._read_patch_pngs)

    def __repr__(self) -> str:
        return f"<StoredRun {self.label}; stages done: {', '.join(s for s in self.stages if self.done(s)) or 'none'}>"

    # ---- stages ----

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages this run has, in the order they run."""
        return keys.stages_of(self.config.get("units"))

    def done(self, stage: str) -> bool:
        return self.manifest["stages"].get(stage, {}).get("status") == "done"

    @property
    def complete(self) -> bool:
        """Every stage done with the run's present inputs."""
        return bool(self.manifest.get("complete")) and all(self.done(stage) for stage in self.stages)

    def require(self, *stages: str) -> None:
        missing = [stage for stage in stages if not self.done(stage)]
        if missing:
            raise NeuroCartoError(f"run {self.name} lacks the {', '.join(missing)} stage(s): finish it with "
                                  "`python -m neurocarto precompute` (the same options resume it)")

    def array(self, name: str) -> np.ndarray:
        """A stored array by its store name, once its stage is done."""
        self.require(keys.stage_of_array(name))
        return self.store.get_array(self.key, name)

    @property
    def skipped(self) -> tuple[int, list[str]]:
        return skipped_images(self.manifest)

    # ---- layers, neurons, classes ----

    @cached_property
    def layers(self) -> list[Layer]:
        return [Layer.from_description(layer) for layer in self.manifest["layers"]]

    @cached_property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @cached_property
    def layer_of(self) -> np.ndarray:
        """(neurons,) each neuron's layer index."""
        return neuron_layers(self.layers)

    @cached_property
    def layer_offsets(self) -> np.ndarray:
        """(layers + 1,) where each layer's neurons start, then the neuron count."""
        return np.array(neuron_offsets(self.layers) + [len(self.layer_of)])

    @cached_property
    def neuron_ids(self) -> list[str]:
        return neuron_ids(self.layers)

    @cached_property
    def _neuron_index(self) -> dict[str, int]:
        return {neuron: i for i, neuron in enumerate(self.neuron_ids)}

    def neuron_index(self, neuron_id: str) -> int | None:
        return self._neuron_index.get(neuron_id)

    @cached_property
    def class_names(self) -> list[str]:
        self.require(keys.PASS1)
        return self.store.get_json(self.key, keys.CLASS_NAMES)

    def class_index(self, name: str) -> int | None:
        lowered = [c.lower() for c in self.class_names]
        return lowered.index(name.lower()) if name.lower() in lowered else None

    # ---- pass 1 ----

    @cached_property
    def top_images(self) -> np.ndarray:
        """(neurons, k) run image ids of each neuron's top images, strongest first."""
        return self.array(keys.TOP_IMAGES)

    @cached_property
    def image_labels(self) -> np.ndarray:
        """(images,) the class of each run image."""
        return self.array(keys.IMAGE_LABELS)

    @cached_property
    def top_sets(self) -> np.ndarray:
        """(neurons, k) top images as clustering compares them (`cluster.clustering_sets`)."""
        return cluster.clustering_sets(self.top_images, self.array(keys.TOP_VALUES), len(self.image_labels))

    def top_image_classes(self, neurons) -> np.ndarray:
        """How many of these neurons' top images come from each class."""
        images = np.unique(self.top_images[list(neurons)])
        return np.bincount(self.image_labels[images], minlength=len(self.class_names))

    # ---- clusters and the concept hierarchy ----

    @cached_property
    def cluster_labels(self) -> np.ndarray:
        """(neurons,) cluster of each neuron at the run's own cut (−1: in none)."""
        return self.array(keys.CLUSTER_LABELS)

    @cached_property
    def merges(self) -> np.ndarray:
        """The concept hierarchy's merge rows (`hierarchy.linkage_merges`)."""
        return self.array(keys.CLUSTER_MERGES)

    @cached_property
    def _groups(self) -> np.ndarray:
        return self.layer_of if self.config.get("cluster", {}).get("per_layer", True) else np.zeros_like(self.layer_of)

    @cached_property
    def merge_caps(self) -> np.ndarray:
        """(merges,) the largest cluster each merge may make."""
        return self.array(keys.CLUSTER_CAPS)[hierarchy.merge_groups(len(self.layer_of), self.merges, self._groups)]

    @cached_property
    def layer_cuts(self) -> np.ndarray:
        """(layers,) the run's own cut of each layer."""
        cuts = self.array(keys.CLUSTER_CUTS)
        return cuts[self._groups[self.layer_offsets[:-1]]] if len(self.layer_of) else cuts

    @property
    def floor(self) -> float:
        """The lowest cut the hierarchy holds."""
        return float(self.config.get("cluster", {}).get("floor", 0.05))

    def cut_range(self) -> str:
        """The run's own cut in words: one value, or the range over layers."""
        low, high = float(self.layer_cuts.min()), float(self.layer_cuts.max())
        return f"{low:.2f}" if math.isclose(low, high, abs_tol=0.005) else f"{low:.2f}–{high:.2f}"

    def _clustering(self, cut: str | float) -> concept_graph.Clustering:
        labels = self.cluster_labels if cut == AUTO else hierarchy.cut_labels(
            len(self.layer_of), self.merges, float(cut), self.merge_caps)
        return concept_graph.Clustering(labels, concept_graph.cluster_anchors(labels, self.layer_of))

    def _cluster_similarity(self, cut: str | float, label: int, layer: int) -> tuple[int, float]:
        """A cluster's size and mean pairwise Jaccard of its members' top images."""
        members = self.clustering(cut).members_of(label, self.layer_of, layer)
        return len(members), cluster.mean_jaccard(self.top_sets, members)

    def clusters_at(self, cut: str | float = AUTO) -> list[Cluster]:
        """Every cluster at a cut ("auto": each layer's own), in layer order then by smallest member."""
        cut = parse_cut(cut, self.floor)
        clustering = self.clustering(cut)
        found = []
        for anchor in np.unique(clustering.anchors[clustering.labels >= 0]):
            label, layer = int(clustering.labels[anchor]), int(self.layer_of[anchor])
            members = clustering.members_of(label, self.layer_of, layer)
            found.append(Cluster(f"{self.layer_names[layer]}:c{anchor - self.layer_offsets[layer]}",
                                 self.layer_names[layer], [self.neuron_ids[m] for m in members],
                                 self.cluster_similarity(cut, label, layer)[1]))
        return found

    @property
    def clusters(self) -> list[Cluster]:
        """The clusters at the run's own cut."""
        return self.clusters_at(AUTO)

    def members(self, item: str, cut: str | float = AUTO) -> np.ndarray:
        """Flat indices of the neurons a neuron id (itself) or a cluster id (its members at the cut) names."""
        return self._resolve(item, cut)[0]

    def _resolve(self, item: str, cut: str | float) -> tuple[np.ndarray, bool]:
        neuron, via_cluster = concept_graph.anchor_neuron(item, self.neuron_index)
        if neuron is None:
            raise NeuroCartoError(f"unknown neuron or cluster {item!r}: expected layer:channel or layer:c<channel>; "
                                  f"layers: {suggest(item.rpartition(':')[0], self.layer_names)}")
        if not via_cluster:
            return np.array([neuron]), False
        clustering = self.clustering(parse_cut(cut, self.floor))
        label = int(clustering.labels[neuron])
        if label < 0:
            raise NeuroCartoError(f"{item}: neuron {self.neuron_ids[neuron]} is in no cluster at cut {cut}")
        return clustering.members_of(label, self.layer_of, int(self.layer_of[neuron])), True

    # ---- the embedding ----

    @cached_property
    def projection(self) -> np.ndarray:
        """(neurons, 2) the 2D map of the embedding (UMAP)."""
        return self.array(keys.PROJECTION)

    @cached_property
    def neighbor_table(self) -> np.ndarray:
        """(neurons, n) each neuron's nearest neurons in the full-dimensional embedding, nearest first."""
        return self.array(keys.NEIGHBORS)

    @cached_property
    def embedding(self) -> np.ndarray:
        """(neurons, dimensions) the skip-gram vectors."""
        return self.array(keys.EMBEDDING)

    def neighbors(self, item: str, k: int = 10, cut: str | float = AUTO) -> list[Neighbor]:
        """The k neurons nearest (cosine, full dimension) a neuron or a cluster's mean vector, itself excluded."""
        nearest, similarity = embed.nearest_to_mean(self.embedding, self.members(item, cut), k)
        return [Neighbor(self.neuron_ids[n], float(s)) for n, s in zip(nearest, similarity)]

    # ---- class graphs ----

    def class_of(self, which: int | str) -> int:
        """A class by index or name (any case); NeuroCartoError naming the valid ones."""
        index = self.class_index(which) if isinstance(which, str) else int(which)
        if index is None or not 0 <= index < len(self.class_names):
            raise NeuroCartoError(f"unknown class {which!r}: {suggest(str(which), self.class_names)}")
        return index

    def graph(self, which: int | str, cut: str | float = AUTO) -> dict:
        """A class's graph (by index or name) at a cut: nodes (id, layer, members as flat neuron indices,
        score) and edges (source, target, weight). As stored at the run's own cut, else regrouped from the
        stored neuron-level weights."""
        self.require(keys.GRAPH)
        return self._graph_at(self.class_of(which), parse_cut(cut, self.floor))

    def _read_class_weights(self, class_index: int) -> tuple[np.ndarray, np.ndarray]:
        """A class's chosen neurons (NEURON_DTYPE) and neuron-level weights (WEIGHT_DTYPE), as the graph stage
        stored them."""
        return (self.store.get_array(self.key, keys.graph_neurons(class_index)),
                self.store.get_array(self.key, keys.graph_weights(class_index)))

    def _read_graph(self, class_index: int, cut: str | float) -> dict:
        stored = self.store.get_json(self.key, keys.class_graph(class_index))
        if cut == AUTO:
            return stored
        chosen, weights = self.class_weights(class_index)
        clustering = self.clustering(cut)
        return concept_graph.class_graph_at(chosen, weights, stored["images"], self.layer_names,
                                            list(self.layer_offsets[:-1]), self.layer_of, clustering.labels,
                                            clustering.anchors, self.max_in_edges)

    @property
    def max_in_edges(self) -> int:
        return int(self.config.get("graph", {}).get("max_in_edges", 10))

    def resolve_nodes(self, graph: dict, node_ids: list[str], cut: str | float, outside: bool = False) -> list[dict]:
        """The nodes of `graph` that hold the neurons these ids name (ids of any cut), without repeats. With `outside`,
        an id that no node holds stands as a node of its own, marked `outside`: the neuron, or its cluster at the cut
        (as after a switch to a class whose graph lacks what was selected)."""
        labels, found, seen = self.clustering(cut).labels, [], set()
        for node_id in node_ids:
            neuron, via_cluster = concept_graph.anchor_neuron(node_id, self.neuron_index)
            node = None if neuron is None else concept_graph.node_holding(graph, neuron, labels, self.layer_of,
                                                                          via_cluster)
            if node is None and outside and neuron is not None and not (via_cluster and labels[neuron] < 0):
                node = {"id": node_id, "members": [int(m) for m in self.members(node_id, cut)], "outside": True,
                        "cluster": int(labels[neuron]) if via_cluster else -1, "layer_index": int(self.layer_of[neuron])}
            if node is not None and node["id"] not in seen:
                seen.add(node["id"])
                found.append(node)
        return found

    def typical_images(self, which: int | str, count: int = 8) -> list[tuple[int, int, int]]:
        """(image, neuron, rank) of the class's own images its graph's neurons hold most among their top images
        that have patches (`concept_graph.typical_images`); the same at every cut, which only regroups them."""
        class_index = self.class_of(which)
        neurons = [n for node in self.graph(class_index)["nodes"] for n in node["members"]]
        return concept_graph.typical_images(self.top_images, self.image_labels, neurons, self.layer_of, class_index,
                                            self.patch_count, count)

    # ---- patches and labels ----

    @property
    def patch_count(self) -> int:
        """Patches stored per neuron: one per top image, up to the run's `--patches`."""
        per_neuron = int(self.config["patches"]["per_neuron"])
        return min(per_neuron, int(self.config["top_k"])) if self.config.get("top_k") else per_neuron

    def _read_patch_pngs(self, neuron: int) -> tuple[bytes, ...]:
        self.require(keys.PATCHES)
        return tuple(unpack(self.store.get_bytes(self.key, keys.neuron_patches(neuron))))

    def patches(self, item: str, cut: str | float = AUTO) -> list:
        """PIL images: a neuron's top patches, strongest first; for a cluster, each member's strongest patch."""
        from PIL import Image

        members, via_cluster = self._resolve(item, cut)
        pngs = [self.patch_pngs(int(m))[0] for m in members if self.patch_pngs(int(m))] if via_cluster else list(
            self.patch_pngs(int(members[0])))
        return [Image.open(io.BytesIO(png)) for png in pngs]

    @cached_property
    def parts(self):
        """On the generated Parts data, which part each neuron's top images show (None on other data)."""
        spec = self.config.get("data") or ""
        if not spec.startswith("parts"):
            return None
        from neurocarto.zoo.parts import PartLabels

        grids = [(layer.height, layer.width) for layer in self.layers]
        return PartLabels(spec, self.array(keys.IMAGE_INDEX), self.top_images, self.array(keys.TOP_VALUES),
                          self.array(keys.TOP_POSITIONS), [grids[i] for i in self.layer_of])

    def concept_label(self, neurons) -> str:
        """What neurons detect, in words: the class most of their top images come from, or on Parts data the part
        most of them show under the argmax, and its share."""
        return self._label(tuple(int(n) for n in neurons))

    def _read_label(self, neurons: tuple[int, ...]) -> str:
        counts, names = (self.parts.counts(neurons), self.parts.names) if self.parts else (
            self.top_image_classes(neurons), self.class_names)
        top = int(np.argmax(counts))
        name = names[top]
        return f"{name if len(name) <= 10 else name[:9] + '…'} {counts[top] / max(counts.sum(), 1):.0%}"


def unit_siblings(store: Store, key: str) -> dict[str, str]:
    """The complete runs that differ from run `key` in their units only (model, weights, data, images and every other
    parameter the same): units → key, this run's own included."""
    manifest = store.manifest(key)

    def recipe(other: dict) -> tuple:
        config = {name: value for name, value in other["config"].items() if name not in ("name", "units", "dictionary")}
        return other["model"], other["data"].get("fingerprint"), other["counts"]["images"], json.dumps(config, sort_keys=True)

    mine = recipe(manifest)
    siblings = {other["config"].get("units", "neurons"): other_key for other_key, other in complete_runs(store)
                if other_key != key and recipe(other) == mine}
    return {**siblings, manifest["config"].get("units", "neurons"): key}


def complete_runs(store: Store) -> list[tuple[str, dict]]:
    """(key, manifest) of every run whose every stage is done with its present inputs, newest first."""
    runs = [(key, manifest) for key, manifest, _ in store.list_runs()
            if manifest and manifest.get("complete")
            and all(manifest["stages"].get(s, {}).get("status") == "done"
                    for s in keys.stages_of(manifest.get("config", {}).get("units")))]
    return sorted(runs, key=lambda item: item[1].get("created", ""), reverse=True)


def open_run(reference: str | None = None, cache: str | Path = "cache") -> StoredRun:
    """A stored run by name, key or key prefix (None: the newest complete run); the store stays open with it."""
    path = Path(cache)
    if not Store.holds_store(path):
        raise NeuroCartoError(f"{path} holds no neurocarto store: name the folder `precompute --cache` wrote")
    store = Store(path)
    try:
        if reference is None:
            runs = complete_runs(store)
            if not runs:
                raise NeuroCartoError(f"{path} holds no complete run: `python -m neurocarto precompute` makes one")
            reference = runs[0][0]
        return StoredRun(store, store.resolve(reference))
    except NeuroCartoError:
        store.close()
        raise
