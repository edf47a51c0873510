"""A complete synthetic run of any size written straight into a store, for benchmarking the app at scale.

    python benchmarks/synthetic_run.py --cache /tmp/big --neurons 100000

Shaped like a real run (same keys, dtypes and graph structure, nodes built by graph.class_nodes),
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

from neurocarto.graph import class_nodes
from neurocarto.models import Layer
from neurocarto.patches import pack
from neurocarto.store import Store
from neurocarto.ui.rundata import REQUIRED_STAGES


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


def write_synthetic_run(cache: Path, neurons: int = 100_000, n_layers: int = 40, n_classes: int = 200,
                        n_images: int = 20_000, top_k: int = 20, patches: int = 4, seed: int = 0) -> str:
    """Write the run into the store under `cache`; return its key."""
    rng = np.random.default_rng(seed)
    width = neurons // n_layers
    layers = [Layer(f"block{i:02d}", width, 7, 7) for i in range(n_layers)]
    neurons = width * n_layers
    key = f"synthetic{neurons}"
    layer_of = np.repeat(np.arange(n_layers), width)

    # small clusters inside layers: a third of the neurons, in groups of 2-6
    labels = np.full(neurons, -1, dtype=np.int64)
    clustered = rng.permutation(neurons)[: neurons // 3]
    clustered = clustered[np.argsort(layer_of[clustered], kind="stable")]
    members, offsets, start = [], [0], 0
    while start < len(clustered) - 1:
        size = int(rng.integers(2, 7))
        group = clustered[start:start + size]
        group = group[layer_of[group] == layer_of[group[0]]]
        if len(group) >= 2:
            labels[group] = len(offsets) - 1
            members.extend(sorted(group.tolist()))
            offsets.append(len(members))
        start += size
    centres = rng.normal(scale=8, size=(n_layers * 4, 2))
    projection = (centres[layer_of * 4 + rng.integers(0, 4, neurons)] + rng.normal(size=(neurons, 2))).astype(np.float32)

    with Store(cache) as store:
        store.delete_run(key)
        store.put_json(key, "neuron_ids", [f"{layer.name}:{c}" for layer in layers for c in range(width)])
        store.put_json(key, "class_names", [f"class {i:03d}" for i in range(n_classes)])
        store.put_array(key, "projection", projection)
        store.put_array(key, "neighbors", rng.integers(0, neurons, (neurons, 20), dtype=np.int64))
        store.put_array(key, "cluster_labels", labels)
        store.put_array(key, "cluster_offsets", np.array(offsets, dtype=np.int64))
        store.put_array(key, "cluster_members", np.array(members, dtype=np.int64))
        store.put_array(key, "cluster_similarity", rng.uniform(0.3, 0.8, len(offsets) - 1).astype(np.float32))
        store.put_array(key, "top_images", rng.integers(0, n_images, (neurons, top_k), dtype=np.int64))
        store.put_array(key, "image_labels", rng.integers(0, n_classes, n_images, dtype=np.int64))
        for label in range(n_classes):
            row = np.zeros(neurons, dtype=np.int64)
            active = rng.choice(neurons, size=neurons // 300, replace=False)
            row[active] = rng.integers(1, 200, len(active))
            nodes = class_nodes(row, layers, labels)
            by_layer: dict[int, list[str]] = {}
            for node in nodes:
                by_layer.setdefault(node["layer_index"], []).append(node["id"])
            edges = []
            for node in nodes:
                below = by_layer.get(node["layer_index"] - 1, [])
                for source in rng.permutation(below)[:5]:
                    edges.append({"source": str(source), "target": node["id"], "weight": float(rng.exponential())})
            store.put_json(key, f"graph/{label}", {"nodes": nodes, "edges": edges, "images": 50})
        packs = _patch_packs(rng, 16, patches)
        for neuron in range(neurons):
            store.put_bytes(key, f"patches/{neuron}", packs[neuron % len(packs)])
        store.write_manifest({
            "key": key, "name": f"synthetic-{neurons}", "complete": True,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": {"spec": "synthetic", "weights": None, "checksum": None},
            "data": {"kind": "synthetic", "description": "random, shaped like a run", "images": n_images,
                     "classes": n_classes},
            "counts": {"images": n_images, "neurons": neurons, "classes": n_classes, "skipped": 0},
            "layers": [{"name": layer.name, "channels": width, "height": 7, "width": 7} for layer in layers],
            "config": {"patches": {"per_neuron": patches}},
            "stages": {name: {"status": "done"} for name in REQUIRED_STAGES},
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
