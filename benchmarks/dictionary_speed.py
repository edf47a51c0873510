"""Sparse dictionaries of every layer of a run against the run's pass 1, both timed in this process.

    python benchmarks/dictionary_speed.py [--max-images N] [--device cpu]

Computes pass 1 of the default model on the Fashion-MNIST sample (all 70,000 images by default) into a fresh store,
then `dictionary` for every layer with its defaults (100,000 activation vectors, 10 epochs, quality and accuracy on
1,000 held-out images), and prints both times, their ratio and each layer's quality figures.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from neurocarto.analysis.dictionaries import fit_dictionaries
from neurocarto.compute.pipeline import precompute
from neurocarto.config import DictionaryParams, ExecutionConfig, RunConfig
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-images", type=int, default=None, help="the run's images (default: all 70,000)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        manifest = precompute(RunConfig(max_images=args.max_images), ExecutionConfig(
            cache=cache, device=args.device, progress=False), stages=["pass1"], log=lambda _: None)
        pass1 = time.perf_counter() - started
        started = time.perf_counter()
        with Store(cache) as store:
            records = fit_dictionaries(StoredRun(store, manifest["key"]), None, DictionaryParams(), args.device,
                                       log=lambda _: None)
        dictionaries = time.perf_counter() - started
    print(f"{manifest['counts']['images']:,} images, {len(records)} layers, {len(os.sched_getaffinity(0))} CPU cores")
    print("| measure | value |\n|---|---:|")
    print(f"| pass 1 (s) | {pass1:.1f} |")
    print(f"| dictionaries of every layer (s) | {dictionaries:.1f} |")
    print(f"| dictionaries ÷ pass 1 | {dictionaries / pass1:.2f} |")
    print("\n| layer | channels | latents | k | variance explained | mean L0 | dead | dense | accuracy "
          "reconstructed ÷ original |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for q in records:
        print(f"| {q['layer']} | {q['channels']} | {q['latents']} | {q['k']} | {q['variance explained']:.3f} | "
              f"{q['mean l0']:.1f} | {q['dead']} | {q['dense']} | "
              f"{q['accuracy reconstructed']:.3f} ÷ {q['accuracy']:.3f} |")


if __name__ == "__main__":
    main()
