"""Run B's projection in run A's frame, so that matched neurons sit in the same place.

1. A similarity transform (scale, rotation or reflection, shift) of B's own projection onto A's, fitted on the matched
   neuron pairs weighted by their Jaccard (weighted Procrustes: the SVD of the weighted cross-covariance).
2. Transferred: each matched neuron of B goes to the place of its partner in A (the Jaccard-weighted mean of its
   partners' places, when given several); each other neuron of B to the mean place of its placed nearest neighbours in B's own embedding
   (propagated until every neuron reachable is placed; the rest keep their place from 1). A small share of B's own
   aligned layout is mixed in, so that neurons sent to one place keep their own arrangement around it.
"""
from __future__ import annotations

import numpy as np

MIN_ANCHORS = 3             # fewer matched pairs fix no frame: B's projection is only centred on A's
OWN_SHARE = 0.1             # of B's own aligned layout mixed into the transferred places
PROPAGATION_ROUNDS = 20


def similarity_transform(source: np.ndarray, target: np.ndarray,
                         weights: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation (2, 2), shift) minimising Σ wᵢ ‖scale · sourceᵢ @ rotation + shift − targetᵢ‖²; the
    rotation may reflect."""
    weights = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    source_mean, target_mean = weights @ source, weights @ target
    centred_source, centred_target = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd((centred_source * weights[:, None]).T @ centred_target)
    rotation = u @ vt
    spread = float(weights @ (centred_source ** 2).sum(axis=1))
    scale = float(singular.sum() / spread) if spread > 0 else 1.0
    return scale, rotation, target_mean - scale * source_mean @ rotation


def aligned(points: np.ndarray, target: np.ndarray, mine: np.ndarray, theirs: np.ndarray,
            weights: np.ndarray) -> np.ndarray:
    """`points` moved by the similarity transform that takes points[mine] onto target[theirs]."""
    if len(mine) < MIN_ANCHORS:
        return (points - points.mean(axis=0) + target.mean(axis=0)).astype(np.float32)
    scale, rotation, shift = similarity_transform(points[mine], target[theirs], weights)
    return (scale * points @ rotation + shift).astype(np.float32)


def transferred_projection(projection_b: np.ndarray, projection_a: np.ndarray, mine: np.ndarray, theirs: np.ndarray,
                           weights: np.ndarray, neighbors_b: np.ndarray) -> np.ndarray:
    """B's projection in A's frame from the matched pairs (B's `mine`, A's `theirs`, weighted by their Jaccard) and
    B's nearest-neighbour table (neurons, n)."""
    own = aligned(projection_b, projection_a, mine, theirs, weights)
    if len(mine) < MIN_ANCHORS:
        return own
    n = len(projection_b)
    totals = np.zeros((n, 2))
    np.add.at(totals, mine, weights[:, None] * projection_a[theirs])
    mass = np.bincount(mine, weights, minlength=n)
    placed = mass > 0
    places = np.zeros((n, 2))
    places[placed] = totals[placed] / mass[placed, None]
    for _ in range(PROPAGATION_ROUNDS):
        waiting = np.flatnonzero(~placed)
        if len(waiting) == 0:
            break
        near = neighbors_b[waiting]
        known = placed[near]
        counts = known.sum(axis=1)
        reached = counts > 0
        if not reached.any():
            break
        means = (places[near] * known[..., None]).sum(axis=1)[reached] / counts[reached, None]
        places[waiting[reached]] = means
        placed[waiting[reached]] = True
    places[~placed] = own[~placed]
    return ((1 - OWN_SHARE) * places + OWN_SHARE * own).astype(np.float32)
