"""Time and peak memory of the default precompute from an empty cache.

    python benchmarks/default_precompute.py [--sizes 10000 70000]

For each size, a fresh process runs `python -m neurocarto precompute --max-images N` into an
empty temporary cache; prints wall time, pass-1 time and peak resident memory. The baseline in
the same run is a bare forward pass over the same images in a fresh process, so the table shows
the precompute's cost as a ratio, and that peak memory does not grow with the number of images.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

BARE = """
import resource, sys, time, torch
from torch.utils.data import DataLoader
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.inputs.prepared_run import RunImages, collate_readable, prepare
run = prepare(RunConfig(max_images=int(sys.argv[1])), ExecutionConfig(cache=sys.argv[2]))
loader = DataLoader(RunImages(run.dataset, run.indices, run.model.transform), batch_size=256,
                    collate_fn=collate_readable)
started = time.perf_counter()
with torch.inference_mode():
    for images, *_ in loader:
        run.model.module(images)
print(time.perf_counter() - started)
"""


def wall_and_peak(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `command`, run under a helper of its own: RUSAGE_CHILDREN's
    maximum covers every child so far, so the helper's only child is the command."""
    probe = [sys.executable, "-c",
             "import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)",
             *command]
    wall, peak = map(float, subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split())
    return wall, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 70000])
    args = parser.parse_args()
    print("| images | precompute wall (s) | pass 1 (s) | bare forward + decode (s) | pass 1 / bare | "
          "cluster / embed / graph / patches (s) | peak RSS (MB) |")
    print("|---:|---:|---:|---:|---:|---|---:|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as cache:
            bare_seconds = float(subprocess.run([sys.executable, "-c", BARE, str(size), cache], capture_output=True,
                                                text=True, check=True).stdout.strip())
            wall, peak = wall_and_peak([sys.executable, "-m", "neurocarto", "precompute", "--max-images", str(size),
                                        "--quiet", "--cache", cache])
            runs = subprocess.run([sys.executable, "-m", "neurocarto", "runs", "--json", "--cache", cache],
                                  capture_output=True, text=True, check=True)
            seconds = {name: stage["seconds"] for name, stage in json.loads(runs.stdout)[0]["stages"].items()}
        later = " / ".join(f"{seconds[name]:.1f}" for name in ("cluster", "embed", "graph", "patches"))
        print(f"| {size} | {wall:.1f} | {seconds['pass1']:.1f} | {bare_seconds:.1f} | "
              f"{seconds['pass1'] / bare_seconds:.2f} | {later} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
