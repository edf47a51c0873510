"""What the app shows of one run, read once through the store (per-class graphs on demand)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..errors import NeuroCartoError
from ..patches import unpack
from ..store import Store

REQUIRED_STAGES = ("pass1", "cluster", "embed", "graph", "patches")


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
    cluster_members: list[np.ndarray]
    cluster_similarity: np.ndarray
    top_images: np.ndarray          # (neurons, k) run image ids
    image_labels: np.ndarray        # (images,) class of each run image
    patch_count: int
    _store: Store = field(repr=False, default=None)

    def neuron_index(self, neuron_id: str) -> int | None:
        try:
            return self._index[neuron_id]
        except KeyError:
            return None

    def __post_init__(self) -> None:
        self._index = {neuron: i for i, neuron in enumerate(self.neuron_ids)}
        self.graph = lru_cache(maxsize=64)(self._graph)
        self.patches = lru_cache(maxsize=4096)(self._patches)

    def _graph(self, class_index: int) -> dict:
        return self._store.get_json(self.key, f"graph/{class_index}")

    def _patches(self, neuron: int) -> tuple[bytes, ...]:
        return tuple(unpack(self._store.get_bytes(self.key, f"patches/{neuron}")))

    def top_image_classes(self, neurons: list[int]) -> np.ndarray:
        """How many of these neurons' top images come from each class."""
        images = np.unique(self.top_images[neurons])
        return np.bincount(self.image_labels[images], minlength=len(self.class_names))

    def class_index(self, name: str) -> int | None:
        lowered = [c.lower() for c in self.class_names]
        return lowered.index(name.lower()) if name.lower() in lowered else None


def complete_runs(store: Store) -> list[tuple[str, dict]]:
    """(key, manifest) of every run whose every stage is done, newest first."""
    runs = [(key, manifest) for key, manifest, _ in store.list_runs()
            if manifest and all(manifest["stages"].get(s, {}).get("status") == "done" for s in REQUIRED_STAGES)]
    return sorted(runs, key=lambda item: item[1].get("created", ""), reverse=True)


def run_label(manifest: dict) -> str:
    return (f"{manifest['name']} — {manifest['model']['spec']} × {manifest['data']['kind']} "
            f"({manifest['counts']['images']:,} images, {manifest['counts']['neurons']:,} neurons)")


def load_run(store: Store, key: str) -> RunData:
    manifest = store.manifest(key)
    if manifest is None or not all(manifest["stages"].get(s, {}).get("status") == "done" for s in REQUIRED_STAGES):
        raise NeuroCartoError(f"run {key} is not complete: finish it with `python -m neurocarto precompute`")
    layers = manifest["layers"]
    offsets = store.get_array(key, "cluster_offsets")
    members = store.get_array(key, "cluster_members")
    return RunData(
        key=key, name=manifest["name"], label=run_label(manifest),
        neuron_ids=store.get_json(key, "neuron_ids"),
        layer_names=[layer["name"] for layer in layers],
        layer_of=np.repeat(np.arange(len(layers)), [layer["channels"] for layer in layers]),
        class_names=store.get_json(key, "class_names"),
        projection=store.get_array(key, "projection"),
        neighbors=store.get_array(key, "neighbors"),
        cluster_members=[members[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)],
        cluster_similarity=store.get_array(key, "cluster_similarity"),
        top_images=store.get_array(key, "top_images"),
        image_labels=store.get_array(key, "image_labels"),
        patch_count=int(manifest["config"]["patches"]["per_neuron"]),
        _store=store,
    )
