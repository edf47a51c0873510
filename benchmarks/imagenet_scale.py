"""ImageNet-shaped scale: generated JPEGs at ImageNet size through googlenet's 25-block map.

    python benchmarks/imagenet_scale.py [--folder DIR] [--images 40000] [--sizes 10000 40000]
                                        [--throughput-images 1000] [--memory-size 112] [--device cpu]

1. Writes (once; reused when --folder already holds them) --images JPEGs of 500×375 pixels, quality 90
   (ImageNet's typical size and bytes), in 100 synset-named class folders.
2. Throughput at 224² over --throughput-images, in this process: JPEG decode + transform alone (the
   DataLoader), then bare forward on decoded batches, pass 1 on decoded batches and pass 1 end to end
   (DataLoader with --workers) alternated --repeats times, medians in images/s.
3. Memory: for each of --sizes a fresh `python -m neurocarto precompute --stages pass1` over that many
   of the JPEGs (at --memory-size pixels, to fit this 2-core machine; 224 with a GPU) with wall time,
   pass-1 images/s and peak resident memory: flat when it does not grow with the number of images.
4. The projection of the measured end-to-end rate to ImageNet's 1,281,167 images, against the
   original's ~1.9 GPU-hours per block × 25 blocks.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from default_precompute import wall_and_peak
from PIL import Image
from torch.utils.data import DataLoader

from neurocarto.compute.pass1 import ClassStatistics, Pass1State, StreamingTopK, run_pass1
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.inputs.prepared_run import RunImages, collate_readable, prepare, resolve_device

CLASSES = 100
IMAGENET_IMAGES = 1_281_167
ORIGINAL_GPU_HOURS = 1.9 * 25


def _write_image(job: tuple[Path, int]) -> int:
    path, index = job
    rng = np.random.default_rng(index)
    low = rng.uniform(0, 255, (6, 8, 3))
    smooth = np.asarray(Image.fromarray(low.astype(np.uint8)).resize((500, 375), Image.BICUBIC), dtype=np.float32)
    pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path.stat().st_size


def ensure_images(folder: Path, n_images: int, classes: int = CLASSES) -> float:
    """Write the JPEGs that are missing, image i in class i % classes; return the mean file size in kB."""
    jobs = []
    for index in range(n_images):
        path = folder / f"n{index % classes:08d}" / f"{index:07d}.JPEG"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((path, index))
    with multiprocessing.Pool() as pool:
        pool.map(_write_image, jobs, chunksize=64)
    sizes = [p.stat().st_size for p in list(folder.glob("*/*.JPEG"))[:2000]]
    return float(np.mean(sizes)) / 1e3


def rate(n_images: int, work) -> float:
    started = time.perf_counter()
    work()
    return n_images / (time.perf_counter() - started)


def throughput(folder: Path, n_images: int, workers: int, device: str, amp: bool, repeats: int) -> dict:
    cache = tempfile.mkdtemp()
    run = prepare(RunConfig(model="googlenet", data=str(folder), max_images=n_images, amp=amp),
                  ExecutionConfig(cache=cache))
    device = resolve_device(device)
    model = run.model.module.to(device)
    images = RunImages(run.dataset, run.indices, run.model.transform)

    def loader(n_workers: int):
        return DataLoader(images, batch_size=32, collate_fn=collate_readable, num_workers=n_workers)

    decoded = []
    decode = rate(n_images, lambda: decoded.extend(loader(workers)))
    on_device = [(x.to(device), y.to(device), ids, skipped) for x, y, ids, skipped in decoded]

    autocast = torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
                              enabled=amp)

    def forward():
        with torch.inference_mode(), autocast:
            for x, *_ in on_device:
                model(x)

    def pass1(batches):
        state = Pass1State(StreamingTopK(run.n_neurons, run.config.top_k, device),
                       ClassStatistics(len(run.dataset.class_names), run.n_neurons, device))
        run_pass1(model, run.layers, batches, state, run.config.threshold, device, amp)

    forward()   # warm-up
    rates = {"bare": [], "pass1 decoded": [], "pass1 end to end": []}
    for _ in range(repeats):    # alternated, so that all three see the same machine load
        rates["bare"].append(rate(n_images, forward))
        rates["pass1 decoded"].append(rate(n_images, lambda: pass1(on_device)))
        rates["pass1 end to end"].append(rate(n_images, lambda: pass1(loader(workers))))
    return {"decode": decode, **{name: statistics.median(values) for name, values in rates.items()}}


def memory_run(folder: Path, n_images: int, image_size: int, device: str, workers: int,
               amp: bool) -> tuple[float, float, float]:
    """Wall seconds, pass-1 images/s and peak RSS (MB) of a fresh pass-1 precompute."""
    with tempfile.TemporaryDirectory() as cache:
        command = [sys.executable, "-m", "neurocarto", "precompute", "--model", "googlenet", "--data", str(folder),
                   "--max-images", str(n_images), "--image-size", str(image_size), "--stages", "pass1",
                   "--device", device, "--workers", str(workers), "--batch-size", "64", "--quiet", "--cache", cache] + (["--amp"] if amp else [])
        wall, peak = wall_and_peak(command)
        runs = subprocess.run([sys.executable, "-m", "neurocarto", "runs", "--json", "--cache", cache],
                              capture_output=True, text=True, check=True)
        seconds = json.loads(runs.stdout)[0]["stages"]["pass1"]["seconds"]
    return wall, n_images / seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "neurocarto-imagenet-shaped")
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000])
    parser.add_argument("--throughput-images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="alternated throughput repeats (medians shown)")
    parser.add_argument("--memory-size", type=int, default=112)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="mixed precision (float16 on GPU, bfloat16 on CPU)")
    args = parser.parse_args()
    started = time.perf_counter()
    kilobytes = ensure_images(args.folder, max(args.images, *args.sizes))
    print(f"{max(args.images, *args.sizes):,} JPEGs of 500×375 ({kilobytes:.0f} kB mean) ready in {args.folder} "
          f"({time.perf_counter() - started:.0f} s)\n", flush=True)
    rates = throughput(args.folder, args.throughput_images, args.workers, args.device, args.amp, args.repeats)
    print(f"googlenet, 25 blocks, 224², {args.throughput_images} images, device {args.device}, amp {args.amp}, "
          f"{args.workers} DataLoader worker(s), {torch.get_num_threads()} torch threads\n")
    print("| step | images/s | vs bare forward |")
    print("|---|---:|---:|")
    for name, value in rates.items():
        print(f"| {name} | {value:.1f} | {value / rates['bare']:.2f} |")
    print()
    print("| images | input | wall (s) | pass 1 images/s | peak RSS (MB) |")
    print("|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        wall, images_per_second, peak = memory_run(args.folder, size, args.memory_size, args.device, args.workers,
                                                   args.amp)
        print(f"| {size:,} | {args.memory_size}² | {wall:.0f} | {images_per_second:.1f} | {peak:.0f} |", flush=True)
    hours = IMAGENET_IMAGES / rates["pass1 end to end"] / 3600
    print(f"\nImageNet's {IMAGENET_IMAGES:,} images at the end-to-end 224² rate: {hours:.1f} hours for all 25 blocks "
          f"at once (the original: ~{ORIGINAL_GPU_HOURS:.1f} GPU-hours, one pass per block)")


if __name__ == "__main__":
    main()
