"""An ImageNet-shaped run with 1,000 classes through every stage, as a user runs it.

    python benchmarks/thousand_classes.py [--folder DIR] [--per-class 20] [--model resnet18] [--size 112]
                                          [--device cpu] [--workers 1]

Writes (once; reused when --folder holds them) --per-class × 1,000 generated JPEGs of 500×375 pixels in
1,000 synset-named folders (`imagenet_scale.py`'s images), then runs `python -m neurocarto precompute`
on them (random weights, default parameters otherwise) and prints each stage's seconds and its ratio
to pass 1, the class-graph stage's cost per class and how it computed its feeds, and the peak memory.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from default_precompute import wall_and_peak
from imagenet_scale import ensure_images

CLASSES = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "neurocarto-1000-classes")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    n_images = args.per_class * CLASSES
    ensure_images(args.folder, n_images, CLASSES)
    with tempfile.TemporaryDirectory() as cache:
        command = [sys.executable, "-m", "neurocarto", "precompute", "--model", args.model, "--data", str(args.folder),
                   "--image-size", str(args.size), "--device", args.device, "--workers", str(args.workers),
                   "--quiet", "--cache", cache]
        wall, peak = wall_and_peak(command)
        runs = subprocess.run([sys.executable, "-m", "neurocarto", "runs", "--json", "--cache", cache],
                              capture_output=True, text=True, check=True)
    manifest = json.loads(runs.stdout)[0]
    stages = manifest["stages"]
    pass1 = stages["pass1"]["seconds"]
    graph = stages["graph"]
    print(f"{args.model} at {args.size}², {manifest['images']:,} images, {graph['classes']:,} classes, "
          f"{manifest['neurons']:,} neurons in {len(manifest['layers'])} layers, {args.device}; "
          f"wall {wall:.0f} s, peak RSS {peak:.0f} MB")
    print("\n| stage | seconds | ÷ pass 1 |\n|---|---:|---:|")
    for name in ("pass1", "cluster", "embed", "graph", "patches"):
        print(f"| {name} | {stages[name]['seconds']:.1f} | {stages[name]['seconds'] / pass1:.2f} |")
    per_class = graph["seconds_per_class"]
    print(f"\ngraph: {per_class['mean']:.3f} s a class (at most {per_class['max']:.3f} s), "
          f"{graph['images_per_class'] or 'all'} images a class at most ({args.per_class} each here), at most {graph['max_neurons']} neurons a layer; "
          f"feeds {graph['feed_methods']}")


if __name__ == "__main__":
    main()
