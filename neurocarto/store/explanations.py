"""Explained images as stored: per run and image, the prediction, every neuron's maximum and percentile on the
image and its maps, written when an explanation finishes and read before one starts, so that an image asked again —
in the app, the CLI or Python — is read, not recomputed; and uploaded images by their content, so that a URL naming
one opens it again. Torch-free: the web workers read them."""
from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from neurocarto.concepts.lit_graph import image_path, node_values
from neurocarto.store import keys
from neurocarto.store.kept import Kept


def run_image(index: int) -> str:
    """The reference of the run's own image `index` (an index into the run's images)."""
    return f"run:{int(index)}"


def upload_reference(content: bytes) -> str:
    """The reference of an uploaded image: its SHA-256."""
    return f"upload:{hashlib.sha256(content).hexdigest()}"


def reference_from_url(text: str) -> str | None:
    """The reference a URL's `image=` names — a run image's index, or an upload's SHA-256 — or None."""
    if re.fullmatch(r"[0-9]{1,9}", text):
        return run_image(int(text))
    return f"upload:{text.lower()}" if re.fullmatch(r"[0-9a-fA-F]{64}", text) else None


def url_of_reference(reference: str) -> str:
    """What a URL's `image=` says for a reference (`reference_from_url`'s inverse)."""
    return reference.split(":", 1)[1]


@dataclass
class Explained:
    """What the model does with one image, as the store keeps it."""

    image: str                      # run:INDEX or upload:SHA256
    true_class: int | None          # the data class, where known
    top_classes: list               # [(data class index, probability)], most probable first
    maxima: np.ndarray              # (neurons,) the image's spatial maximum of each neuron
    percentiles: np.ndarray         # (neurons,) share of the run's images on which the neuron fires at most this much
    maps: np.ndarray                # (Σ channels × height × width,) float16, each layer's maps flat in neuron order
    view: bytes = b""               # PNG: the image as the model sees it (resized, cropped), where maps lie

    @property
    def predicted(self) -> int:
        return int(self.top_classes[0][0])

    def summary(self) -> dict:
        return {"image": self.image, "true_class": self.true_class,
                "top_classes": [[int(c), float(p)] for c, p in self.top_classes]}


def map_offsets(layers) -> np.ndarray:
    """(layers + 1,) where each layer's maps begin in `Explained.maps`."""
    return np.concatenate([[0], np.cumsum([layer.channels * layer.height * layer.width for layer in layers])])


def neuron_map(explained: Explained, layers, layer: int, channel: int) -> np.ndarray:
    """(height, width) one neuron's map on the image."""
    start = map_offsets(layers)[layer]
    shape = (layers[layer].channels, layers[layer].height, layers[layer].width)
    return explained.maps[start:start + int(np.prod(shape))].reshape(shape)[channel].astype(np.float32)


def concept_map(explained: Explained, layers, layer_offsets, layer_of, members, size: tuple[int, int]) -> np.ndarray:
    """(height, width) at `size` (rows, columns): the mean map of a concept's members (all of one layer) on the
    image, upsampled bilinearly — where on the image the concept fires."""
    layer = int(layer_of[members[0]])
    mean = np.mean([neuron_map(explained, layers, layer, int(m) - int(layer_offsets[layer])) for m in members], axis=0)
    return np.asarray(Image.fromarray(mean.astype(np.float32), mode="F").resize(size[::-1], Image.BILINEAR))


def store_explained(run, explained: Explained) -> None:
    name = keys.explanation(explained.image)
    run.store.put_array(run.key, f"{name}/maxima", explained.maxima.astype(np.float32))
    run.store.put_array(run.key, f"{name}/percentiles", explained.percentiles.astype(np.float32))
    run.store.put_array(run.key, f"{name}/maps", explained.maps.astype(np.float16))
    run.store.put_bytes(run.key, f"{name}/view", explained.view)
    run.store.put_json(run.key, name, explained.summary())        # last: its presence means the rest is there


def stored_explained(run, image: str) -> Explained | None:
    """The stored explanation of `image` in a StoredRun, or None."""
    name = keys.explanation(image)
    if not run.store.has_json(run.key, name):
        return None
    summary = run.store.get_json(run.key, name)
    arrays = [run.store.get_array(run.key, f"{name}/{part}") for part in ("maxima", "percentiles", "maps")]
    return Explained(summary["image"], summary["true_class"], [tuple(row) for row in summary["top_classes"]], *arrays,
                     run.store.get_bytes(run.key, f"{name}/view"))


_read = Kept(32)


def explained_of(run, image: str) -> Explained | None:
    """`stored_explained`, kept in memory once found (an explanation never changes)."""
    return _read.get((id(run), image), lambda: stored_explained(run, image))


def store_upload(run, content: bytes) -> str:
    """Keep an uploaded image's bytes; returns its reference."""
    reference = upload_reference(content)
    run.store.put_bytes(run.key, keys.upload(reference.split(":", 1)[1]), content)
    return reference


def stored_upload(run, reference: str) -> bytes | None:
    name = keys.upload(reference.split(":", 1)[1])
    return run.store.get_bytes(run.key, name) if run.store.has_bytes(run.key, name) else None


def forget_upload(run, reference: str) -> None:
    """Drop an upload the model refused (its mode), so that nothing of a bad input stays."""
    run.store.delete_bytes(run.key, keys.upload(reference.split(":", 1)[1]))


def lit_graph(run, explained: Explained, which: int | str | None = None, cut="auto") -> dict:
    """A class's graph (the predicted class's unless `which` names one) at `cut`, every node with its `value` on
    the image (its members' mean percentile), and the image's own `path` (nodes and edges, from the prediction
    down)."""
    graph = run.graph(explained.predicted if which is None else which, cut)
    values = node_values(graph, explained.percentiles)
    nodes, edges = image_path(graph, values)
    return {**graph, "nodes": [{**node, "value": values[node["id"]]} for node in graph["nodes"]],
            "path": {"nodes": nodes, "edges": [list(edge) for edge in edges]}}


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """(h, w) in [0, 1] → (h, w, 4) uint8: transparent where cold, through orange to opaque yellow where hot."""
    red = np.full(heat.shape, 230.0)
    green = 40 + 200 * heat
    blue = 30 * (1 - heat)
    alpha = 215 * np.clip(heat * 1.4 - 0.15, 0, 1)
    return np.stack([red, green, blue, alpha], axis=-1).astype(np.uint8)


def heat_layer(heat: np.ndarray) -> Image.Image:
    """An RGBA image of the heat map, normalised to its own range (where on the image, not how much)."""
    low, high = float(heat.min()), float(heat.max())
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    return Image.fromarray(heat_colours(scaled), mode="RGBA")


def overlay(image: Image.Image, heat: np.ndarray) -> Image.Image:
    """The image (RGB) with the heat map (its own size) over it."""
    return Image.alpha_composite(image.convert("RGBA"), heat_layer(heat)).convert("RGB")


def view_image(explained: Explained) -> Image.Image:
    return Image.open(io.BytesIO(explained.view))
