"""Neuron embedding: neurons strongly activated by the same images ("co-occurring") sit close.

Reads each neuron's top-k image ids (pass 1); gives an embedding per neuron, its 2D projection
and its nearest neighbours.
1. Sentences: per image, every neuron (across all layers) with the image among its top-k;
   images with fewer than two neurons are dropped.
2. Skip-gram with negative sampling, a numba kernel: separate input and context vectors,
   negatives drawn from the unigram distribution raised to 0.75, a linearly decaying learning
   rate, word2vec's reduced window (1…window, uniform per centre word); a sentence is a set,
   so its words are shuffled each epoch and the window picks contexts from that order. One thread is deterministic for a seed; more threads update lock-free.
   Cost is linear in the total sentence length.
3. The `n_neighbors` nearest neighbours of every neuron by cosine similarity in the full embedding
   (exact), and UMAP to 2D over that neighbour graph (cosine metric, PCA initialisation). UMAP's numba kernels
   are compiled once and kept on disk like ours (umap-learn compiles them afresh in every process, ~4 s).
"""
from __future__ import annotations

import math
import warnings

import numba
import numpy as np
from numba import prange

from neurocarto.config import EmbedParams


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


LOSS_SAMPLE = 16     # the loss is tracked on every 16th centre word: a log per pair would cost ~15%


@numba.njit(cache=True, fastmath=True, inline="always")
def _update_pair(center, target, label, learning_rate, w_in, w_out, gradient, track):
    dot = np.float32(0.0)
    for d in range(w_in.shape[1]):
        dot += w_in[center, d] * w_out[target, d]
    if dot > 6.0:
        probability = 0.9975273768433653      # σ(6): word2vec's clipping
    elif dot < -6.0:
        probability = 0.0024726231566347743
    else:
        probability = 1.0 / (1.0 + math.exp(-dot))
    step = np.float32((label - probability) * learning_rate)
    for d in range(w_in.shape[1]):
        gradient[d] += step * w_out[target, d]
        w_out[target, d] += step * w_in[center, d]
    if not track:
        return 0.0
    return -math.log(max(probability if label > 0 else 1.0 - probability, 1e-12))


@numba.njit(cache=True, fastmath=True)
def _train_chunk(offsets, words, sentence_order, w_in, w_out, table, window, negatives,
                 learning_rate, words_before, total_words):
    """Train on sentences sentence_order[...] in order; returns (loss sum, tracked pairs)."""
    dimensions = w_in.shape[1]
    gradient = np.zeros(dimensions, dtype=np.float32)
    longest = 0
    for s in sentence_order:
        longest = max(longest, offsets[s + 1] - offsets[s])
    buffer = np.empty(longest, dtype=words.dtype)     # one allocation: threads would contend on many
    loss, pairs, seen = 0.0, 0, words_before
    for s in sentence_order:
        start, stop = offsets[s], offsets[s + 1]
        length = stop - start
        sentence = buffer[:length]
        sentence[:] = words[start:stop]
        np.random.shuffle(sentence)
        for position in range(length):
            rate = learning_rate * max(1.0 - seen / total_words, 1e-4)
            track = int(seen) % LOSS_SAMPLE == 0
            seen += 1
            center = sentence[position]
            reach = window - np.random.randint(0, window)     # word2vec's reduced window, 1…window
            for other in range(max(0, position - reach), min(length, position + reach + 1)):
                if other == position:
                    continue
                context = sentence[other]
                gradient[:] = 0.0
                loss += _update_pair(center, context, 1.0, rate, w_in, w_out, gradient, track)
                for _ in range(negatives):
                    negative = table[np.random.randint(0, table.shape[0])]
                    if negative == context:
                        continue
                    loss += _update_pair(center, negative, 0.0, rate, w_in, w_out, gradient, track)
                for d in range(dimensions):
                    w_in[center, d] += gradient[d]
                if track:
                    pairs += 1
    return loss, pairs


@numba.njit(cache=True)
def _seed_numba(seed):
    np.random.seed(seed)


@numba.njit(parallel=True, cache=True)
def _train_parallel(offsets, words, chunks, w_in, w_out, table, window, negatives, learning_rate,
                    chunk_words_before, total_words, seed):
    losses = np.zeros(len(chunks))
    pairs = np.zeros(len(chunks))
    for c in prange(len(chunks)):
        chunk = np.int64(c)
        np.random.seed(seed + chunk)
        losses[chunk], pairs[chunk] = _train_chunk(offsets, words, chunks[chunk], w_in, w_out, table, window,
                                                   negatives, learning_rate, chunk_words_before[chunk], total_words)
    return losses.sum(), int(pairs.sum())


def unigram_table(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """Word ids laid out in proportion to count**power: one uniform index draws a negative."""
    weights = counts.astype(np.float64) ** power
    size = int(min(max(1_000_000, 100 * len(counts)), 50_000_000))
    edges = np.round(np.cumsum(weights) / weights.sum() * size).astype(np.int64)
    return np.repeat(np.arange(len(counts), dtype=np.int64), np.diff(np.concatenate([[0], edges])))


def train_skipgram(offsets: np.ndarray, words: np.ndarray, vocabulary: int,
                   config: EmbedParams = EmbedParams()) -> tuple[np.ndarray, list[float]]:
    """Input vectors (vocabulary, dimensions) float32 and the mean loss per pair of each epoch."""
    rng = np.random.default_rng(config.seed)
    w_in = ((rng.random((vocabulary, config.dimensions)) - 0.5) / config.dimensions).astype(np.float32)
    w_out = np.zeros((vocabulary, config.dimensions), dtype=np.float32)
    table = unigram_table(np.bincount(words, minlength=vocabulary))
    n_sentences = len(offsets) - 1
    lengths = np.diff(offsets)
    total_words = float(lengths.sum()) * config.epochs
    losses = []
    _seed_numba(config.seed)
    for epoch in range(config.epochs):
        order = rng.permutation(n_sentences)
        words_before = float(lengths.sum()) * epoch
        if config.threads <= 1:
            loss, pairs = _train_chunk(offsets, words, order, w_in, w_out, table, config.window,
                                       config.negatives, config.learning_rate, words_before, total_words)
        else:
            previous = numba.get_num_threads()
            numba.set_num_threads(min(config.threads, numba.config.NUMBA_NUM_THREADS))
            chunks = np.array_split(order, config.threads * 8)
            chunk_before = words_before + np.concatenate([[0], np.cumsum([lengths[c].sum() for c in chunks])[:-1]])
            loss, pairs = _train_parallel(offsets, words, numba.typed.List(chunks), w_in, w_out, table,
                                          config.window, config.negatives, config.learning_rate,
                                          chunk_before.astype(np.float64), total_words, config.seed + 1000 * epoch)
            numba.set_num_threads(previous)
        losses.append(loss / max(pairs, 1))
    return w_in, losses


@numba.njit(parallel=True, cache=True)
def _row_top(scores, count, first_row):
    """Per row, the `count` largest scores (ties: lower column), excluding column first_row + row."""
    rows, columns = scores.shape
    indices = np.empty((rows, count), dtype=np.int64)
    values = np.empty((rows, count), dtype=np.float32)
    for r in prange(rows):
        best_values = np.full(count, -np.inf, dtype=np.float32)
        best_indices = np.full(count, -1, dtype=np.int64)
        for c in range(columns):
            value = scores[r, c]
            if value <= best_values[count - 1] or c == first_row + r:
                continue
            slot = count - 1
            while slot > 0 and best_values[slot - 1] < value:
                best_values[slot] = best_values[slot - 1]
                best_indices[slot] = best_indices[slot - 1]
                slot -= 1
            best_values[slot] = value
            best_indices[slot] = c
        indices[r] = best_indices
        values[r] = best_values
    return indices, values


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (all-zero rows stay zero)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def cosine_neighbors(embedding: np.ndarray, n_neighbors: int = 20, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-n cosine neighbours of every row (itself excluded): (indices, similarities), most similar first."""
    unit = unit_rows(embedding).astype(np.float32)
    n = len(unit)
    count = min(n_neighbors, n - 1)
    indices = np.empty((n, count), dtype=np.int64)
    similarities = np.empty((n, count), dtype=np.float32)
    for start in range(0, n, block):
        indices[start:start + block], similarities[start:start + block] = _row_top(unit[start:start + block] @ unit.T,
                                                                                 count, start)
    return indices, similarities


def nearest_to_mean(embedding: np.ndarray, members: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k rows nearest (cosine) the mean of `members`' unit vectors, the members excluded: (indices, cosines),
    nearest first, ties to the lower index."""
    unit = unit_rows(embedding)
    centre = unit[members].mean(axis=0)
    similarity = unit @ (centre / max(float(np.linalg.norm(centre)), 1e-12))
    similarity[members] = -np.inf
    nearest = np.argsort(-similarity, kind="stable")[:k]
    return nearest, similarity[nearest]


def _umap_with_cached_kernels():
    """umap, its numba kernels set to keep their compilation on disk (where numba can write; else as before)."""
    import umap
    import umap.layouts
    import umap.umap_
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for module in (umap.umap_, umap.layouts):
        for kernel in vars(module).values():
            if isinstance(kernel, Dispatcher) and isinstance(kernel._cache, NullCache):
                try:
                    kernel.enable_caching()
                except RuntimeError:    # no cache location numba may write to
                    return umap
    return umap


def project_2d(embedding: np.ndarray, seed: int | None = 0, n_neighbors: int = 15, min_dist: float = 0.1,
               neighbors: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """UMAP to 2D with the cosine metric and PCA initialisation; reproducible when seed is given.

    UMAP's neighbour graph is the exact one of `cosine_neighbors` (given as `neighbors` when already computed
    with at least `n_neighbors` - 1 columns): no approximate NN-descent search, nor its compilation."""
    from neurocarto.threads import cpu_budget

    umap = _umap_with_cached_kernels()
    n = len(embedding)
    if n <= 3:
        return np.zeros((n, 2), dtype=np.float32)
    n_neighbors = min(n_neighbors, n - 1)
    if neighbors is None or neighbors[0].shape[1] < n_neighbors - 1:
        neighbors = cosine_neighbors(embedding, n_neighbors - 1)
    indices, similarities = (part[:, :n_neighbors - 1] for part in neighbors)
    knn = (np.hstack([np.arange(n)[:, None], indices]).astype(np.int32),
           np.hstack([np.zeros((n, 1)), np.clip(1.0 - similarities, 0.0, 2.0)]).astype(np.float32))
    reducer = umap.UMAP(n_components=2, metric="cosine", init="pca", n_neighbors=n_neighbors, min_dist=min_dist,
                        random_state=seed, n_jobs=1 if seed is not None else cpu_budget(), precomputed_knn=knn)
    with warnings.catch_warnings():     # no search index: the stage never projects new points
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        return reducer.fit_transform(embedding).astype(np.float32)
