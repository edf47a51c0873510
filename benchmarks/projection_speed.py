"""UMAP projection time: ours (exact cosine neighbours, PCA initialisation) vs UMAP's own NN-descent search with
PCA and with its default spectral initialisation, same data, same run.

    python benchmarks/projection_speed.py [--neurons 100000]

An embedding shaped like ours (30 dimensions, many small co-occurrence groups plus noise),
projected to 2D with the cosine metric, all cores (no seed), as the embed stage does by default.
Also times the exact full-dimensional 20-nearest-neighbour search the stage stores.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from neurocarto.concepts.embed import cosine_neighbors, project_2d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.neurons // 10, 30))
    embedding = (centres[rng.integers(0, len(centres), args.neurons)] + 0.3 * rng.normal(size=(args.neurons, 30)))
    embedding = embedding.astype(np.float32)
    import umap

    project_2d(embedding[:5000], seed=None)      # JIT outside the timings
    # above 4,096 points UMAP's own search is NN-descent: compiled here, outside the timings too
    umap.UMAP(n_components=2, metric="cosine", init="pca", n_epochs=2).fit_transform(embedding[:5000])

    print("| step | neurons | seconds |")
    print("|---|---:|---:|")
    started = time.perf_counter()
    project_2d(embedding, seed=None)
    print(f"| exact 14 neighbours + UMAP 2D, cosine, PCA init (ours) | {args.neurons:,} | "
          f"{time.perf_counter() - started:.1f} |", flush=True)
    started = time.perf_counter()
    umap.UMAP(n_components=2, metric="cosine", init="pca", n_neighbors=15, min_dist=0.1).fit_transform(embedding)
    print(f"| UMAP 2D, cosine, NN-descent neighbours, PCA init | {args.neurons:,} | "
          f"{time.perf_counter() - started:.1f} |", flush=True)
    started = time.perf_counter()
    umap.UMAP(n_components=2, metric="cosine", n_neighbors=15, min_dist=0.1).fit_transform(embedding)
    print(f"| UMAP 2D, cosine, spectral init (umap default) | {args.neurons:,} | {time.perf_counter() - started:.1f} |",
          flush=True)
    started = time.perf_counter()
    cosine_neighbors(embedding, 20)
    print(f"| exact 20 nearest neighbours, 30 dims | {args.neurons:,} | {time.perf_counter() - started:.1f} |")


if __name__ == "__main__":
    main()
