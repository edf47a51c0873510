"""A complete synthetic run of any size written straight into a store, for benchmarking the app at scale.

    python -m neurocarto.testing.synthetic_run --cache /tmp/big --neurons 100000

Shaped like a real run (same keys, dtypes and graph structure, graphs built by concept_graph),
with random content: layers of equal width, sparse class counts, small clusters, a blob projection,
a few distinct patch images. Nothing here is a result; it only gives the views their real sizes.
"""
from __future__ import annotations

import argparse
import datetime
import io
from pathlib import Path

import numpy as np
from PIL import Image

from neurocarto.concepts.concept_graph import WEIGHT_DTYPE, chosen_neurons, class_graph_at, cluster_anchors
from neurocarto.concepts.hierarchy import cut_labels, linkage_merges
from neurocarto.neurons import Layer
from neurocarto.store import keys
from neurocarto.store.disk import Store
from neurocarto.store.patch_images import pack


def _patch_packs(rng: np.random.Generator, count: int, per_neuron: int) -> list[bytes]:
    packs = []
    for _ in range(count):
        pngs = []
        for _ in range(per_neuron):
            buffer = io.BytesIO()
            blocks = rng.integers(0, 255, (4, 4), dtype=np.uint8)
            Image.fromarray(np.kron(blocks, np.ones((8, 8), dtype=np.uint8))).save(buffer, format="PNG")
            pngs.append(buffer.getvalue())
        packs.append(pack(pngs))
    return packs


def planted_top_images(neurons: int, n_images: int = 20_000, top_k: int = 20, runs: int = 2,
                       seed: int = 0) -> list[np.ndarray]:
    """Top-image sets of `runs` runs that share planted concepts: two thirds of each run's neurons are noisy copies of
    one of neurons / 4 concepts (3/4 of a concept's images and others at random), the rest random; no set repeats an
    image. (neurons, top_k) each."""
    rng = np.random.default_rng(seed)
    concepts = np.stack([rng.choice(n_images, top_k, replace=False) for _ in range(max(neurons // 4, 1))])
    kept = top_k * 3 // 4
    found = []
    for _ in range(runs):
        core = np.take_along_axis(concepts[rng.integers(0, len(concepts), neurons)],
                                  np.argsort(rng.random((neurons, top_k)), axis=1)[:, :kept], axis=1)
        sets = np.concatenate([core, rng.integers(0, n_images, (neurons, top_k - kept))], axis=1)
        random = rng.random(neurons) >= 2 / 3
        sets[random] = rng.integers(0, n_images, (int(random.sum()), top_k))
        for row in np.flatnonzero([len(np.unique(row)) < top_k for row in sets]):   # the few with an image twice
            sets[row] = rng.choice(n_images, top_k, replace=False)
        found.append(sets)
    return found


def write_synthetic_run(cache: Path, neurons: int = 100_000, n_layers: int = 40, n_classes: int = 200,
                        n_images: int = 20_000, top_k: int = 20, patches: int = 4, seed: int = 0,
                        top_images: np.ndarray | None = None, key: str | None = None) -> str:
    """Write the run into the store under `cache`; return its key (default `synthetic<neurons>`). `top_images`
    ((neurons, top_k) ids below n_images) replaces the random top images, e.g. to plant concepts two runs share;
    runs of the same n_images are over the same images."""
    rng = np.random.default_rng(seed)
    width = neurons // n_layers
    layers = [Layer(f"block{i:02d}", width, 7, 7) for i in range(n_layers)]
    neurons = width * n_layers
    key = key or f"synthetic{neurons}"
    layer_of = np.repeat(np.arange(n_layers), width)

    # small clusters inside layers: a third of the neurons, in groups of 2-6 at the run's cut, joined into
    # larger ones below it (a real merge order of random similarities within each layer)
    clustered = rng.permutation(neurons)[: neurons // 3]
    clustered = clustered[np.argsort(layer_of[clustered], kind="stable")]
    first, second, similarity, start = [], [], [], 0
    while start < len(clustered) - 1:
        size = int(rng.integers(2, 7))
        group = clustered[start:start + size]
        group = group[layer_of[group] == layer_of[group[0]]]
        for a, b in zip(group[:-1], group[1:]):
            first.append(a), second.append(b), similarity.append(rng.uniform(0.5, 0.9))
        if start and layer_of[clustered[start - 1]] == layer_of[group[0]]:   # a weak link to the previous group
            first.append(clustered[start - 1]), second.append(group[0]), similarity.append(rng.uniform(0.1, 0.4))
        start += size
    merges = linkage_merges(neurons, np.array(first), np.array(second), np.array(similarity), 0.05)
    cuts = np.full(n_layers, 0.3)
    caps = np.full(n_layers, float(width // 6))
    labels = cut_labels(neurons, merges, 0.3, caps[0])
    centres = rng.normal(scale=8, size=(n_layers * 4, 2))
    projection = (centres[layer_of * 4 + rng.integers(0, 4, neurons)] + rng.normal(size=(neurons, 2))).astype(np.float32)

    with Store(cache) as store:
        store.delete_run(key)
        store.put_json(key, keys.NEURON_IDS, [f"{layer.name}:{c}" for layer in layers for c in range(width)])
        store.put_json(key, keys.CLASS_NAMES, [f"class {i:03d}" for i in range(n_classes)])
        store.put_array(key, keys.PROJECTION, projection)
        store.put_array(key, keys.NEIGHBORS, rng.integers(0, neurons, (neurons, 20), dtype=np.int64))
        store.put_array(key, keys.CLUSTER_LABELS, labels)
        store.put_array(key, keys.CLUSTER_MERGES, merges)
        store.put_array(key, keys.CLUSTER_CUTS, cuts)
        store.put_array(key, keys.CLUSTER_CAPS, caps)
        store.put_array(key, keys.TOP_IMAGES, rng.integers(0, n_images, (neurons, top_k), dtype=np.int64)
                        if top_images is None else np.asarray(top_images[:neurons], dtype=np.int64))
        store.put_array(key, keys.IMAGE_INDEX, np.arange(n_images, dtype=np.int64))
        store.put_array(key, keys.TOP_VALUES, rng.uniform(0.1, 1, (neurons, top_k)).astype(np.float32))
        store.put_array(key, keys.IMAGE_LABELS, rng.integers(0, n_classes, n_images, dtype=np.int64))
        offsets = np.arange(n_layers + 1) * width
        anchors = cluster_anchors(labels, layer_of)
        for label in range(n_classes):
            row = np.zeros(neurons, dtype=np.int64)
            active = rng.choice(neurons, size=neurons // 300, replace=False)
            row[active] = rng.integers(1, 200, len(active))
            chosen = chosen_neurons(row, [width] * n_layers, 0.1)
            in_layer = [chosen["neuron"][layer_of[chosen["neuron"]] == layer] for layer in range(n_layers)]
            pairs = [(u, d) for layer in range(1, n_layers) for d in in_layer[layer] for u in in_layer[layer - 1]]
            weights = np.rec.fromarrays([[u for u, _ in pairs], [d for _, d in pairs],
                                         rng.normal(0.2, 1, len(pairs))], dtype=WEIGHT_DTYPE)
            store.put_array(key, keys.graph_neurons(label), chosen)
            store.put_array(key, keys.graph_weights(label), weights)
            store.put_json(key, keys.class_graph(label), class_graph_at(
                chosen, weights, 50, [layer.name for layer in layers], offsets, layer_of, labels, anchors))
        packs = _patch_packs(rng, 16, patches)
        with store.transaction():
            for neuron in range(neurons):
                store.put_bytes(key, keys.neuron_patches(neuron), packs[neuron % len(packs)])
        store.write_manifest({
            "key": key, "name": f"synthetic-{neurons}" if key == f"synthetic{neurons}" else key, "complete": True,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": {"spec": "synthetic", "weights": None, "checksum": None},
            "data": {"kind": "synthetic", "description": "random, shaped like a run", "images": n_images,
                     "classes": n_classes, "fingerprint": f"synthetic-{n_images}"},
            "counts": {"images": n_images, "neurons": neurons, "classes": n_classes, "skipped": 0},
            "layers": [{"name": layer.name, "channels": width, "height": 7, "width": 7} for layer in layers],
            "config": {"patches": {"per_neuron": patches}, "cluster": {"per_layer": True, "floor": 0.05}},
            "stages": {name: {"status": "done"} for name in keys.stages_of("neurons")},
        })
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--neurons", type=int, default=100_000)
    args = parser.parse_args()
    print(write_synthetic_run(args.cache, args.neurons))


if __name__ == "__main__":
    main()
