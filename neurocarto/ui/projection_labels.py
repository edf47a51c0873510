"""What the projection shows of concepts without a selection: where each cluster of the cut lies, which ones get a
label in the visible part of the view (`figures.placed_labels`), and each neuron's dominant class. Kept per run and
cut, since every zoom asks again."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats

from neurocarto.concepts.matching import Concepts
from neurocarto.ui.figures import label_annotations, placed_labels

SHOWN = ("labels", "density", "class")      # the projection's options: concept labels, density, colour by class


@lru_cache(maxsize=16)
def _clusters(run, cut) -> tuple[Concepts, np.ndarray, np.ndarray, np.ndarray]:
    """The cut's concepts, which of them are clusters (two or more members), those clusters' centres on the
    projection, and the clusters' order by size, largest first (positions in the second)."""
    concepts = Concepts.from_labels(run.clustering(cut).labels, run.layer_of)
    keep = np.flatnonzero(concepts.sizes > 1)
    totals = np.zeros((len(concepts), 2))
    np.add.at(totals, np.repeat(np.arange(len(concepts)), concepts.sizes), run.projection[concepts.members])
    centres = totals[keep] / concepts.sizes[keep, None]
    return concepts, keep, centres, np.argsort(-concepts.sizes[keep], kind="stable")


def concept_labels(run, cut, view: tuple[float, float, float, float] | None, paper: bool = False) -> list[dict]:
    """Label annotations of the clusters that fit in `view` (x0, x1, y0, y1; None: the whole projection)."""
    concepts, keep, centres, order = _clusters(run, cut)
    if not len(keep):
        return []
    if view is None:
        low, high = run.projection.min(axis=0), run.projection.max(axis=0)
        pad = 0.05 * (high - low)
        view = (low[0] - pad[0], high[0] + pad[0], low[1] - pad[1], high[1] + pad[1])
    placed = placed_labels(centres, order, view)
    texts = [run.concept_label(concepts.members[concepts.offsets[keep[i]]:concepts.offsets[keep[i] + 1]])
             for i in placed]
    return label_annotations(centres[placed], texts, paper)


@lru_cache(maxsize=8)
def dominant_classes(run) -> np.ndarray:
    """(neurons,) the class most of each neuron's top images come from."""
    return stats.mode(run.image_labels[run.top_images], axis=1, keepdims=False).mode.astype(np.int64)


def visible_range(relayout: dict | None) -> tuple[float, float, float, float] | None:
    """The zoomed view from Plotly's relayoutData, or None for the whole projection."""
    try:
        return tuple(float(relayout[key]) for key in ("xaxis.range[0]", "xaxis.range[1]", "yaxis.range[0]",
                                                      "yaxis.range[1]"))
    except (KeyError, TypeError, ValueError):
        return None
