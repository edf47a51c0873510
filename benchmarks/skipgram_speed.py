"""Skip-gram throughput and quality: our numba kernel vs gensim's Word2Vec on the same sentences.

    pip install gensim   # the reference; not needed by neurocarto itself
    python benchmarks/skipgram_speed.py [--neurons 20000] [--sentences 200000]

A planted corpus shaped like neuron co-occurrence sentences: neurons in groups of 10, each
sentence (an image) holds 3–6 neurons of one group plus 6 random ones. Same hyperparameters
for both (dimension 30, window 5, 5 negatives, 5 epochs, α 0.025 decaying linearly, no
down-sampling); gensim gets the same sentences, each shuffled once. Reported: words per
second, and the ranking quality on held-out sentences (AUC of cosine(a, b) for a co-occurring
pair a, b against cosine(a, c) for a random c).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from neurocarto.concepts.embed import train_skipgram
from neurocarto.config import EmbedParams

DIMENSIONS, WINDOW, NEGATIVES, EPOCHS, ALPHA = 30, 5, 5, 5, 0.025


def planted(n_neurons: int, n_sentences: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    group_size, sentences = 10, []
    groups = rng.integers(0, n_neurons // group_size, n_sentences)
    lengths = rng.integers(3, 7, n_sentences)
    for group, length in zip(groups, lengths):
        members = group * group_size + rng.choice(group_size, length, replace=False)
        sentences.append(rng.permutation(np.concatenate([members, rng.integers(0, n_neurons, 6)])))
    return sentences


def held_out_auc(vectors: np.ndarray, sentences: list[np.ndarray], seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    a, b = np.array([s[0] for s in sentences]), np.array([s[1] for s in sentences])
    c = rng.integers(0, len(vectors), len(sentences))
    positive = (unit[a] * unit[b]).sum(1)
    negative = (unit[a] * unit[c]).sum(1)
    return float((positive > negative).mean() + 0.5 * (positive == negative).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=int, default=20_000)
    parser.add_argument("--sentences", type=int, default=200_000)
    args = parser.parse_args()
    from gensim.models import Word2Vec

    corpus = planted(args.neurons, args.sentences)
    split = int(0.9 * len(corpus))
    train, held_out = corpus[:split], corpus[split:]
    # held-out pairs: sentences whose first two (shuffled) neurons are of the same planted group
    held_out = [s for s in held_out if s[0] // 10 == s[1] // 10]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in train])]).astype(np.int64)
    words = np.concatenate(train).astype(np.int64)
    total_words = len(words) * EPOCHS
    tiny = [s[:5] for s in train[:100]]
    train_skipgram(np.array([0, 5]), np.arange(5), 5, EmbedParams(epochs=1))            # JIT outside the timings
    train_skipgram(np.array([0, 5]), np.arange(5), 5, EmbedParams(epochs=1, threads=2))
    rows = []
    for threads in (1, 2):
        config = EmbedParams(dimensions=DIMENSIONS, epochs=EPOCHS, window=WINDOW, negatives=NEGATIVES,
                             learning_rate=ALPHA, threads=threads, seed=0)
        started = time.perf_counter()
        vectors, _ = train_skipgram(offsets, words, args.neurons, config)
        elapsed = time.perf_counter() - started
        rows.append((f"neurocarto numba, {threads} thread{'s' * (threads > 1)}", total_words / elapsed,
                     held_out_auc(vectors, held_out)))
    tokens = [[str(w) for w in s] for s in train]
    Word2Vec([[str(w) for w in s] for s in tiny], vector_size=DIMENSIONS, min_count=1, workers=1, epochs=1)
    for workers in (1, 2):
        started = time.perf_counter()
        model = Word2Vec(tokens, vector_size=DIMENSIONS, window=WINDOW, negative=NEGATIVES, sg=1, hs=0, min_count=1,
                         sample=0, alpha=ALPHA, min_alpha=ALPHA * 1e-4, epochs=EPOCHS, workers=workers, seed=0)
        elapsed = time.perf_counter() - started
        vectors = np.zeros((args.neurons, DIMENSIONS), dtype=np.float32)
        for token, index in model.wv.key_to_index.items():
            vectors[int(token)] = model.wv.vectors[index]
        rows.append((f"gensim Word2Vec, {workers} worker{'s' * (workers > 1)}", total_words / elapsed,
                     held_out_auc(vectors, held_out)))
    print(f"{len(train):,} sentences, {len(words):,} words × {EPOCHS} epochs, {args.neurons:,} neurons")
    print("| implementation | words/s | vs gensim, same threads | held-out AUC |")
    print("|---|---:|---:|---:|")
    for index, (label, speed, auc) in enumerate(rows):
        reference = rows[2 + index % 2][1]
        print(f"| {label} | {speed:,.0f} | {speed / reference:.2f}× | {auc:.3f} |")


if __name__ == "__main__":
    main()
