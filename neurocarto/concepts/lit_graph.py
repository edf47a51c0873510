"""One image on the data set's summary: how strongly each neuron fires on it, as a percentile of that neuron's
maxima over the run's images, each graph node's value from its members', and the image's own path through a class
graph (numpy only).

Reads an image's per-neuron spatial maxima, pass 1's sample of maxima and top-k values, and a class graph; gives
percentiles in [0, 1] that compare across neurons, node values and the path.
"""
from __future__ import annotations

import numpy as np


def neuron_percentiles(maxima: np.ndarray, sample: np.ndarray, top_values: np.ndarray, n_images: int) -> np.ndarray:
    """(neurons,) the share of the run's images on which each neuron's maximum is at most this image's.

    `sample` is (m, neurons): the maxima of an even sample of the run's images.
    Above a neuron's k-th largest value the share is exact, from its top-k (`top_values`, (neurons, k), descending);
    below it the sample estimates it, capped where the top-k begin."""
    maxima = np.asarray(maxima, dtype=np.float64)
    estimate = (sample <= maxima[None, :]).sum(axis=0) / max(len(sample), 1)
    k = top_values.shape[1]
    above = (top_values > maxima[:, None]).sum(axis=1)
    exact = 1.0 - above / n_images
    in_top = maxima >= top_values[:, -1]
    return np.where(in_top, exact, np.minimum(estimate, 1.0 - k / n_images)).clip(0.0, 1.0)


def node_values(graph: dict, percentiles: np.ndarray) -> dict[str, float]:
    """Each node's value on the image: the mean percentile of its members."""
    return {node["id"]: float(np.mean(percentiles[node["members"]])) for node in graph["nodes"]}


def image_path(graph: dict, values: dict[str, float]) -> tuple[list[str], list[tuple[str, str]]]:
    """The image's own chain through the graph, from the prediction down: the top layer's node it lights most, then
    at each step the in-edge with the largest weight × its source's value on the image. (nodes, edges), top first."""
    layer_of = {node["id"]: node["layer_index"] for node in graph["nodes"]}
    if not layer_of:
        return [], []
    top = max(layer_of.values())
    current = max((n for n in layer_of if layer_of[n] == top), key=lambda n: (values[n], n))
    incoming: dict[str, list[dict]] = {}
    for edge in graph["edges"]:
        incoming.setdefault(edge["target"], []).append(edge)
    nodes, edges = [current], []
    while incoming.get(current):
        strongest = max(incoming[current], key=lambda e: (e["weight"] * values[e["source"]], e["source"]))
        if strongest["weight"] * values[strongest["source"]] <= 0 or strongest["source"] in nodes:
            break
        edges.append((strongest["source"], current))
        current = strongest["source"]
        nodes.append(current)
    return nodes, edges
