"""Pass 1 throughput against a bare forward pass over the same DataLoader and model.

    python benchmarks/pass1_throughput.py [--images 10000] [--repeats 3]

Alternates bare and pass-1 epochs over the same images (so both see the same machine load),
once reading through the DataLoader and once over batches decoded beforehand (model work
alone, the stricter ratio), and prints the median images/s of each and their ratio; target: pass 1 ≥ 0.9 × bare.
Cases: the default model on Fashion-MNIST, and googlenet (25 blocks) at ImageNet's 224-pixel
input and at 112 pixels (4× less model work per image: the harder case for the ratio).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from neurocarto.compute.pass1 import ClassStatistics, Pass1State, StreamingTopK, run_pass1
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.inputs.prepared_run import RunImages, collate_readable, prepare


def timed_epochs(run, batches, repeats: int) -> tuple[list[float], list[float]]:
    """Median-ready images/s of bare forward and of pass 1, alternating, over `batches` (re-iterable)."""
    model, device = run.model.module, torch.device("cpu")
    n_images = len(run.indices)

    def bare() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for images, *_ in batches:
                model(images)
        return n_images / (time.perf_counter() - started)

    def pass1() -> float:
        state = Pass1State(StreamingTopK(run.n_neurons, run.config.top_k),
                           ClassStatistics(len(run.dataset.class_names), run.n_neurons))
        started = time.perf_counter()
        run_pass1(model, run.layers, batches, state, run.config.threshold, device)
        return n_images / (time.perf_counter() - started)

    bare(), pass1()  # warm-up
    bare_rates, pass1_rates = [], []
    for _ in range(repeats):
        bare_rates.append(bare())
        pass1_rates.append(pass1())
    return bare_rates, pass1_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--googlenet-images", type=int, default=400,
                        help="images at 224² (4× as many at 112²)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cache = Path("cache")
    cases = [
        ("fashion-inception, Fashion-MNIST 28²", RunConfig(max_images=args.images), 256),
        ("googlenet (25 blocks), Fashion-MNIST at 224²",
         RunConfig(model="googlenet", image_size=224, max_images=args.googlenet_images), 32),
        ("googlenet (25 blocks), Fashion-MNIST at 112²",
         RunConfig(model="googlenet", image_size=112, max_images=4 * args.googlenet_images), 32),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| case | images | input | bare forward (img/s) | pass 1 (img/s) | ratio |")
    print("|---|---:|---|---:|---:|---:|")
    for label, config, batch_size in cases:
        run = prepare(config, ExecutionConfig(cache=cache))
        loader = DataLoader(RunImages(run.dataset, run.indices, run.model.transform), batch_size=batch_size,
                            collate_fn=collate_readable)
        # the DataLoader as pass 1 reads it, and its batches decoded once (model work alone)
        for source, batches in (("DataLoader", loader), ("decoded batches", list(loader))):
            bare_rates, pass1_rates = timed_epochs(run, batches, args.repeats)
            bare_rate, pass1_rate = statistics.median(bare_rates), statistics.median(pass1_rates)
            print(f"| {label} | {len(run.indices)} | {source} | {bare_rate:.0f} | {pass1_rate:.0f} | "
                  f"{pass1_rate / bare_rate:.3f} |", flush=True)


if __name__ == "__main__":
    main()
