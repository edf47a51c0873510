"""Neuron embedding: neurons strongly activated by the same images ("co-occurring") sit close.

Reads each neuron's top-k image ids (pass 1); gives an embedding per neuron, its 2D projection
and its nearest neighbours.
1. Sentences: per image, every neuron (across all layers) with the image among its top-k;
   images with fewer than two neurons are dropped.
2. Skip-gram with negative sampling, a numba kernel: separate input and context vectors,
   negatives drawn from the unigram distribution raised to 0.75, a linearly decaying learning
   rate; a sentence is a set, so its words are shuffled each epoch and `window` picks contexts
   from that order. One thread is deterministic for a seed; more threads update lock-free.
   Cost is linear in the total sentence length.
3. UMAP to 2D (cosine metric, PCA initialisation), and the `n_neighbors` nearest neighbours of
   every neuron by cosine similarity in the full embedding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange


def image_sentences(top_images: np.ndarray, min_length: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(neurons, k) top images → CSR sentences (offsets, neuron ids), one per image with ≥ min_length."""
    n_neurons, k = top_images.shape
    flat = top_images.reshape(-1)
    neurons = np.repeat(np.arange(n_neurons, dtype=np.int64), k)
    order = np.argsort(flat, kind="stable")
    flat, neurons = flat[order], neurons[order]
    boundaries = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], boundaries])
    lengths = np.diff(np.concatenate([starts, [len(flat)]]))
    keep = lengths >= min_length
    kept_words = np.repeat(keep, lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
    return offsets, neurons[kept_words]


@dataclass(frozen=True)
class SkipGramConfig:
    dimensions: int = 30
    epochs: int = 5
    window: int = 5
    negatives: int = 5
    learning_rate: float = 0.025
    threads: int = 1          # 1: deterministic for a seed
    seed: int = 0


@numba.njit(cache=True, inline="always")
def _update_pair(center, target, label, learning_rate, w_in, w_out, gradient):
    dot = 0.0
    for d in range(w_in.shape[1]):
        dot += w_in[center, d] * w_out[target, d]
    if dot > 6.0:
        probability = 1.0 / (1.0 + math.exp(-6.0))
    elif dot < -6.0:
        probability = 1.0 / (1.0 + math.exp(6.0))
    else:
        probability = 1.0 / (1.0 + math.exp(-dot))
    step = (label - probability) * learning_rate
    for d in range(w_in.shape[1]):
        gradient[d] += step * w_out[target, d]
        w_out[target, d] += step * w_in[center, d]
    return -math.log(max(probability if label > 0 else 1.0 - probability, 1e-12))


@numba.njit(cache=True)
def _train_chunk(offsets, words, sentence_order, w_in, w_out, cumulative, window, negatives,
                 learning_rate, words_before, total_words):
    """Train on sentences sentence_order[...] in order; returns (loss sum, pairs)."""
    dimensions = w_in.shape[1]
    gradient = np.zeros(dimensions)
    loss, pairs, seen = 0.0, 0, words_before
    for s in sentence_order:
        start, stop = offsets[s], offsets[s + 1]
        sentence = words[start:stop].copy()
        np.random.shuffle(sentence)
        length = stop - start
        for position in range(length):
            rate = learning_rate * max(1.0 - seen / total_words, 1e-4)
            seen += 1
            center = sentence[position]
            for other in range(max(0, position - window), min(length, position + window + 1)):
                if other == position:
                    continue
                gradient[:] = 0.0
                loss += _update_pair(center, sentence[other], 1.0, rate, w_in, w_out, gradient)
                for _ in range(negatives):
                    negative = np.searchsorted(cumulative, np.random.random() * cumulative[-1], side="right")
                    if negative == sentence[other]:
                        continue
                    loss += _update_pair(center, negative, 0.0, rate, w_in, w_out, gradient)
                for d in range(dimensions):
                    w_in[center, d] += gradient[d]
                pairs += 1
    return loss, pairs


@numba.njit(cache=True)
def _seed_numba(seed):
    np.random.seed(seed)


@numba.njit(parallel=True, cache=True)
def _train_parallel(offsets, words, chunks, w_in, w_out, cumulative, window, negatives, learning_rate,
                    chunk_words_before, total_words, seed):
    losses = np.zeros(len(chunks))
    pairs = np.zeros(len(chunks))
    for c in prange(len(chunks)):
        chunk = np.int64(c)
        np.random.seed(seed + chunk)
        losses[chunk], pairs[chunk] = _train_chunk(offsets, words, chunks[chunk], w_in, w_out, cumulative, window,
                                                   negatives, learning_rate, chunk_words_before[chunk], total_words)
    return losses.sum(), int(pairs.sum())


def train_skipgram(offsets: np.ndarray, words: np.ndarray, vocabulary: int,
                   config: SkipGramConfig = SkipGramConfig()) -> tuple[np.ndarray, list[float]]:
    """Input vectors (vocabulary, dimensions) float32 and the mean loss per pair of each epoch."""
    rng = np.random.default_rng(config.seed)
    w_in = ((rng.random((vocabulary, config.dimensions)) - 0.5) / config.dimensions).astype(np.float64)
    w_out = np.zeros((vocabulary, config.dimensions))
    counts = np.bincount(words, minlength=vocabulary).astype(np.float64)
    cumulative = np.cumsum(counts ** 0.75)
    n_sentences = len(offsets) - 1
    lengths = np.diff(offsets)
    total_words = float(lengths.sum()) * config.epochs
    losses = []
    _seed_numba(config.seed)
    for epoch in range(config.epochs):
        order = rng.permutation(n_sentences)
        words_before = float(lengths.sum()) * epoch
        if config.threads <= 1:
            loss, pairs = _train_chunk(offsets, words, order, w_in, w_out, cumulative, config.window,
                                       config.negatives, config.learning_rate, words_before, total_words)
        else:
            previous = numba.get_num_threads()
            numba.set_num_threads(min(config.threads, numba.config.NUMBA_NUM_THREADS))
            chunks = np.array_split(order, config.threads * 8)
            chunk_before = words_before + np.concatenate([[0], np.cumsum([lengths[c].sum() for c in chunks])[:-1]])
            loss, pairs = _train_parallel(offsets, words, numba.typed.List(chunks), w_in, w_out, cumulative,
                                          config.window, config.negatives, config.learning_rate,
                                          chunk_before.astype(np.float64), total_words, config.seed + 1000 * epoch)
            numba.set_num_threads(previous)
        losses.append(loss / max(pairs, 1))
    return w_in.astype(np.float32), losses


def cosine_neighbors(embedding: np.ndarray, n_neighbors: int = 20, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-n cosine neighbours of every row (itself excluded): (indices, similarities)."""
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    unit = (embedding / np.maximum(norms, 1e-12)).astype(np.float32)
    n = len(unit)
    count = min(n_neighbors, n - 1)
    indices = np.empty((n, count), dtype=np.int64)
    similarities = np.empty((n, count), dtype=np.float32)
    for start in range(0, n, block):
        scores = unit[start:start + block] @ unit.T
        rows = np.arange(len(scores))
        scores[rows, start + rows] = -np.inf
        top = np.argpartition(-scores, count - 1, axis=1)[:, :count] if count < n - 1 else np.argsort(-scores, 1)[:, :count]
        top_scores = np.take_along_axis(scores, top, 1)
        order = np.lexsort((top, -top_scores), axis=1)
        indices[start:start + block] = np.take_along_axis(top, order, 1)
        similarities[start:start + block] = np.take_along_axis(top_scores, order, 1)
    return indices, similarities


def project_2d(embedding: np.ndarray, seed: int | None = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """UMAP to 2D with the cosine metric and PCA initialisation; reproducible when seed is given."""
    import umap

    if len(embedding) <= 3:
        return np.zeros((len(embedding), 2), dtype=np.float32)
    reducer = umap.UMAP(n_components=2, metric="cosine", init="pca", n_neighbors=min(n_neighbors, len(embedding) - 1),
                        min_dist=min_dist, random_state=seed, n_jobs=1 if seed is not None else -1)
    return reducer.fit_transform(embedding).astype(np.float32)
