"""Matching two runs' neurons: MinHash + LSH across the runs against exact all pairs, and a whole comparison of two
googlenet-sized runs.

    python benchmarks/compare_speed.py [--sizes 12500,25000,50000,100000] [--images 20000] [--cache cache]

1. Synthetic pairs of runs of N neurons each (k = 20 top images of --images, 20,000 by default): two thirds of each run's neurons are
   noisy copies of concepts both runs share (15 of a concept's 20 images and 5 others), the rest random. At each N,
   the cross pairs with Jaccard ≥ 0.3 by LSH (recall target 0.995 at the threshold) beside the exact sparse product
   (up to 50,000 a run; at 100,000 the exact answer for a seeded sample of 2,000 neurons of run A stands in), in the
   same run: seconds, seconds per neuron, recall.
2. torchvision's googlenet, two random initialisations (seeds 0 and 1: 6,848 neurons each in its 25 blocks), on
   the same 1,000 Fashion-MNIST images at 64²: both runs precomputed into the store if missing, then `nc.compare`
   timed from nothing (recompute), on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from neurocarto.concepts import matching
from neurocarto.testing.synthetic_run import planted_top_images

K, THRESHOLD = 20, 0.3


def planted_runs(n: int, images: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    first, second = planted_top_images(n, images, K)
    return first, second


def exact_rows(sets_a: np.ndarray, sets_b: np.ndarray, rows: np.ndarray) -> set:
    """The exact pairs ≥ THRESHOLD of A's `rows` against all of B."""
    first, second, _ = matching.exact_cross_pairs(sets_a[rows], sets_b, THRESHOLD)
    return set(zip(rows[first].tolist(), second.tolist()))


def synthetic(sizes: list[int], images: int) -> None:
    print(f"| neurons a run | LSH (s) | LSH µs a neuron | exact (s) | pairs ≥ {THRESHOLD} | recall |\n|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        sets_a, sets_b = planted_runs(n, images)
        started = time.perf_counter()
        first, second, _ = matching.cross_pairs(sets_a, sets_b, THRESHOLD, exact=False)
        lsh = time.perf_counter() - started
        found = set(zip(first.tolist(), second.tolist()))
        if n <= 50_000:
            started = time.perf_counter()
            exact_first, exact_second, _ = matching.cross_pairs(sets_a, sets_b, THRESHOLD, exact=True)
            exact = time.perf_counter() - started
            truth = set(zip(exact_first.tolist(), exact_second.tolist()))
            exact_text = f"{exact:.2f}"
        else:
            rows = np.random.default_rng(1).choice(n, 2000, replace=False)
            truth = exact_rows(sets_a, sets_b, rows)
            found = {pair for pair in found if pair[0] in set(rows.tolist())}
            exact_text = "(sample of 2,000)"
        recall = len(found & truth) / max(len(truth), 1)
        print(f"| {n:,} | {lsh:.2f} | {lsh / n * 1e6:.1f} | {exact_text} | {len(truth):,} | {recall:.4f} |", flush=True)


def googlenet_runs(cache: str):
    """Two runs of googlenet over the same 1,000 images, its random initialisations of seeds 0 and 1 (saved as
    weight files beside the store), precomputed when the store lacks them."""
    from pathlib import Path

    import torch
    import torchvision

    from neurocarto.compute.pipeline import precompute
    from neurocarto.config import ExecutionConfig, RunConfig
    from neurocarto.store.disk import Store
    from neurocarto.store.stored_run import StoredRun

    keys = []
    for seed in (0, 1):
        weights = Path(cache) / f"googlenet-init{seed}.pt"
        if not weights.exists():
            Path(cache).mkdir(parents=True, exist_ok=True)
            torch.manual_seed(seed)
            torch.save(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).state_dict(),
                       weights)
        config = RunConfig(model="googlenet", weights=str(weights), max_images=1000, image_size=64,
                           name=f"googlenet-init{seed}")
        keys.append(precompute(config, ExecutionConfig(cache=cache, progress=False), log=lambda _: None)["key"])
    store = Store(cache)
    return StoredRun(store, keys[0]), StoredRun(store, keys[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="12500,25000,50000,100000")
    parser.add_argument("--images", type=int, default=20_000, help="the image ids the synthetic runs draw from")
    parser.add_argument("--cache", default="cache")
    args = parser.parse_args()
    print(f"{len(os.sched_getaffinity(0))} CPU cores")
    matching.cross_pairs(*planted_runs(2000), THRESHOLD, exact=False)      # compile the kernels outside the timing
    synthetic([int(size) for size in args.sizes.split(",") if size], args.images)       # --sizes "": the googlenet runs only

    import neurocarto as nc

    run_a, run_b = googlenet_runs(args.cache)
    started = time.perf_counter()
    comparison = nc.compare(run_a, run_b, recompute=True)
    seconds = time.perf_counter() - started
    counts = comparison.counts()
    print(f"\ngooglenet × 2 ({len(run_a.layer_of):,} and {len(run_b.layer_of):,} neurons): compared in {seconds:.2f} s "
          f"(matching and the projection {comparison.seconds:.2f} s, the rest storing it); seed 0's clusters: "
          + ", ".join(f"{count} {name}" for name, count in counts["a"]["clusters"].items()))


if __name__ == "__main__":
    main()
