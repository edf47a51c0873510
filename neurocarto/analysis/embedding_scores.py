"""How well an embedding puts neurons of one concept together, and the original's update rule as a baseline.

Reads neuron vectors and a group (concept) per neuron; gives mean centred cosines within and across
groups and the share of nearest neighbours in the same group. The original's rule (one vector per
neuron, consecutive pairs of a shuffled sentence, uniform negatives, constant rate) trains on the same
sentences as ours, for `evaluate.py`.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from neurocarto.concepts import embed
from neurocarto.config import EmbedParams

NEIGHBOURS = 10


@numba.njit(cache=True)
def _original_rule(offsets, words, vectors, epochs, negatives, learning_rate, seed):
    np.random.seed(seed)
    n_sentences, n_neurons = len(offsets) - 1, vectors.shape[0]
    for _ in range(epochs):
        for s in np.random.permutation(n_sentences):
            sentence = words[offsets[s]:offsets[s + 1]].copy()
            np.random.shuffle(sentence)
            for i in range(len(sentence) - 1):
                u, v = sentence[i], sentence[i + 1]
                coefficient = 1.0 - 1.0 / (1.0 + math.exp(-np.dot(vectors[u], vectors[v])))
                gradient_u = -coefficient * vectors[v]
                gradient_v = -coefficient * vectors[u]
                for _ in range(negatives):
                    w = np.random.randint(n_neurons)
                    gradient_u += vectors[w] / (1.0 + math.exp(-np.dot(vectors[w], vectors[u])))
                    gradient_v += vectors[w] / (1.0 + math.exp(-np.dot(vectors[w], vectors[v])))
                vectors[u] -= learning_rate * gradient_u
                vectors[v] -= learning_rate * gradient_v
    return vectors


def original_rule_embedding(offsets: np.ndarray, words: np.ndarray, n_neurons: int, params: EmbedParams) -> np.ndarray:
    """The original's update rule on the same sentences, same dimensions, epochs, negatives and rate."""
    start = np.random.default_rng(params.seed).random((n_neurons, params.dimensions)) - 0.5
    return _original_rule(offsets, words, start, params.epochs, params.negatives, params.learning_rate, params.seed)


def cosine(vectors: np.ndarray) -> np.ndarray:
    unit = embed.unit_rows(vectors)
    return unit @ unit.T


def _pair_cosine_sums(unit: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Sum of cosines over ordered pairs i ≠ j with equal labels, and their number, from per-label sums of
    unit vectors: Σ_{i,j in g} u_i·u_j = ‖Σ_g u‖², so no n × n matrix is formed."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), unit.shape[1]))
    np.add.at(sums, inverse, unit)
    return float((sums ** 2).sum() - (unit ** 2).sum()), int((counts * (counts - 1)).sum())


def _ratio(total: float, count: int) -> float:
    return total / count if count else float("nan")


def embedding_scores(vectors: np.ndarray, groups: np.ndarray, subgroups: np.ndarray | None = None) -> dict:
    """Mean cosine of pairs in the same group vs different groups (and, with `subgroups`, same group but
    another subgroup), and the share of each neuron's 10 nearest that share its group, against chance.

    Vectors are centred first: skip-gram vectors share a common direction that makes every raw cosine
    near 1 without changing which neurons are nearest. O(neurons × dimensions) but for the neighbours."""
    centred = vectors - vectors.mean(axis=0)
    unit = embed.unit_rows(centred)
    n = len(unit)
    all_sum, all_count = _pair_cosine_sums(unit, np.zeros(n, dtype=np.int64))
    same_sum, same_count = _pair_cosine_sums(unit, groups)
    scores = {"same group": _ratio(same_sum, same_count),
              "other groups": _ratio(all_sum - same_sum, all_count - same_count)}
    if subgroups is not None:
        _, both = np.unique(np.stack([groups, subgroups], axis=1), axis=0, return_inverse=True)
        sub_sum, sub_count = _pair_cosine_sums(unit, both.ravel())
        scores["same group, other subgroup"] = _ratio(same_sum - sub_sum, same_count - sub_count)
    nearest, _ = embed.cosine_neighbors(centred, NEIGHBOURS)
    scores["neighbors in group"] = float((groups[nearest] == groups[:, None]).mean())
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    scores["chance"] = float(((counts[inverse] - 1) / (n - 1)).mean())
    return scores
