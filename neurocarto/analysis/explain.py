"""Why the model called this image what it did, inside the run's summary: `nc.explain(run, image)`.

Reads a stored run and one image — one of the run's own (by index) or any other (a path, bytes, a PIL image, an
array) — and runs the run's model on it (torch): the model's top-5 among the data's classes, every neuron's spatial
maximum as a percentile of its maxima over the run's images (`concepts.lit_graph`), and every neuron's map. The
result is kept in the store (`store.explanations`) and read, not recomputed, when the same image is asked again;
`store.explanations.lit_graph` lights a class graph with it. The image as the model saw it (resized, cropped,
its normalisation undone) is kept with it, for heat maps that lie where the maps do.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neurocarto.analysis.rerun import prepared_for
from neurocarto.compute.patches import display_image, normalisation_of
from neurocarto.concepts.lit_graph import neuron_percentiles
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.capture import LayerCapture
from neurocarto.store import keys
from neurocarto.store.explanations import (
    Explained,
    run_image,
    store_explained,
    store_upload,
    stored_explained,
    upload_reference,
)
from neurocarto.store.uploads import in_mode, read_upload

TOP_CLASSES = 5


def _as_image(image) -> tuple[Image.Image, bytes | None]:
    """A path, bytes, a PIL image or an (h, w[, 3]) uint8 array → (PIL image, the bytes as given, if any)."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise NeuroCartoError(f"{path}: no such image file")
        image = path.read_bytes()
    if isinstance(image, bytes):
        return None, image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise NeuroCartoError(f"an image array must be uint8 of shape (h, w) or (h, w, 3), not {image.dtype} "
                                  f"{image.shape}")
        return Image.fromarray(image), None
    if isinstance(image, Image.Image):
        return image, None
    raise NeuroCartoError(f"an image is a run image index, a path, bytes, a PIL image or an array, not "
                          f"{type(image).__name__}")


class Explainer:
    """A stored run's model loaded once, for explaining many images (`model`: the nn.Module of a run made from a
    Python object)."""

    def __init__(self, run, model=None, device: str = "cpu"):
        run.require(keys.PASS1)
        self.run, self.device = run, torch.device(device)
        self.prepared = prepared_for(run, model, "explanation")
        self.mode = self.prepared.dataset.load(int(self.prepared.indices[0])).mode
        self.targets = self.prepared.output_classes()
        self.normalisation = normalisation_of(self.prepared.model.transform)
        self.sample, self.top_values = run.array(keys.MAXIMA_SAMPLE), run.array(keys.TOP_VALUES)
        self.n_images = run.manifest["counts"]["images"] - run.skipped[0]

    def explain(self, image, keep: bool = True) -> Explained:
        """The explanation of `image` (a run image index, a path, bytes, a PIL image or an array); read from the
        store if kept there, else computed and, with `keep`, kept."""
        reference, pil, content = reference_of(self.run, image)
        found = stored_explained(self.run, reference)
        if found is not None:
            return found
        if reference.startswith("run:"):
            tensor, true_class = self.prepared.load_images([int(image)]), int(self.run.image_labels[int(image)])
        else:
            pil = read_upload(content, self.mode) if pil is None else in_mode(pil, self.mode)
            tensor, true_class = self.prepared.model.transform(pil).unsqueeze(0), None
        explained = self._forward(tensor, reference, true_class)
        if keep:
            if reference.startswith("upload:"):
                store_upload(self.run, content)
            store_explained(self.run, explained)
        return explained

    def _forward(self, tensor: torch.Tensor, reference: str, true_class: int | None) -> Explained:
        """One forward pass: every layer's maps and the model's outputs → an `Explained`."""
        model, layers = self.prepared.model.module.to(self.device).eval(), self.prepared.layers
        maps: dict[int, torch.Tensor] = {}
        with torch.inference_mode(), LayerCapture(model, layers, lambda i, m: maps.__setitem__(i, m[0].float().cpu())):
            output = model(tensor.to(self.device))
        missing = [layer.name for i, layer in enumerate(layers) if i not in maps]
        if missing:
            raise NeuroCartoError(f"the forward pass did not reach layer(s) {', '.join(missing)} on this image")
        logits = (output[0] if isinstance(output, (tuple, list)) else output)[0].float().cpu()
        probabilities = torch.softmax(logits, dim=0).numpy()[self.targets]
        order = np.argsort(-probabilities, kind="stable")[:TOP_CLASSES]
        ordered = [maps[i] for i in range(len(layers))]
        maxima = torch.cat([m.flatten(1).amax(dim=1) for m in ordered]).numpy()
        percentiles = neuron_percentiles(maxima, self.sample, self.top_values, self.n_images)
        view = io.BytesIO()
        Image.fromarray(display_image(tensor[0], self.normalisation)).save(view, format="PNG")
        return Explained(reference, true_class, [(int(c), float(probabilities[c])) for c in order], maxima,
                         percentiles, torch.cat([m.flatten() for m in ordered]).numpy().astype(np.float16),
                         view.getvalue())


def reference_of(run, image) -> tuple[str, Image.Image | None, bytes | None]:
    """(the store's reference of `image`, its PIL image if given as one, its bytes as given or as PNG)."""
    if isinstance(image, (int, np.integer)):
        if not 0 <= int(image) < len(run.image_labels):
            raise NeuroCartoError(f"image {image}: the run's images are 0 … {len(run.image_labels) - 1}")
        return run_image(int(image)), None, None
    pil, content = _as_image(image)
    if content is None:
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG")
        content = buffer.getvalue()
    return upload_reference(content), pil, content


def explain(run, image, model=None, device: str = "cpu") -> Explained:
    """The explanation of `image` for a StoredRun, kept in the store; read from it when asked again (the model is
    loaded only when it is not there)."""
    reference = reference_of(run, image)[0]
    found = stored_explained(run, reference)
    return found if found is not None else Explainer(run, model, device).explain(image)


def explanation_dict(run, explained: Explained, graph: dict) -> dict:
    """The explanation and its lit graph as JSON: the prediction, each neuron's maximum and percentile, each node's
    value and the path."""
    return {**explained.summary(), "classes": [run.class_names[c] for c, _ in explained.top_classes],
            "neurons": {"ids": run.neuron_ids, "maxima": explained.maxima.round(5).tolist(),
                        "percentiles": explained.percentiles.round(5).tolist()},
            "graph": {"nodes": [{"id": n["id"], "layer": n["layer"], "value": round(n["value"], 5),
                                 "members": [run.neuron_ids[m] for m in n["members"]]} for n in graph["nodes"]],
                      "edges": graph["edges"], "path": graph["path"]}}


def format_explanation(run, explained: Explained, graph: dict, class_index: int, lit_nodes: int = 5) -> str:
    """The explanation in words: the prediction, the image's path through the class graph and its most lit nodes."""
    truth = f" (true class {run.class_names[explained.true_class]})" if explained.true_class is not None else ""
    by_id = {node["id"]: node for node in graph["nodes"]}

    def node_words(node_id: str) -> str:
        node = by_id[node_id]
        return f"{node_id} {node['value']:.0%} [{run.concept_label(node['members'])}]"

    lines = [f"image {explained.image}{truth}",
             "prediction: " + ", ".join(f"{run.class_names[c]} {p:.2f}" for c, p in explained.top_classes),
             f"graph of {run.class_names[class_index]}: {len(graph['nodes'])} nodes; a node's value is its members' "
             "mean percentile on this image among the run's images",
             "the image's path, from the prediction down: " + " ← ".join(node_words(n) for n in graph["path"]["nodes"]),
             "most lit nodes: " + ", ".join(node_words(node["id"]) for node in
                                            sorted(graph["nodes"], key=lambda n: -n["value"])[:lit_nodes])]
    return "\n".join(lines)
