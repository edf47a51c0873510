"""Every torchvision classifier through every stage with its default layer map.

    python benchmarks/model_matrix.py [--images 48] [--data DIR] [--out docs/models.md] [--only resnet18 vit_b_16 …]
                                      [--timm-folder DIR] [--timm-images 1000] [--timm-only]
                                      [--device auto|cpu|cuda] [--jobs N]

Each of `torchvision.models.list_models(module=torchvision.models)` runs `precompute` (all stages) with
random weights (seeded) on --images images of --data (default Fashion-MNIST; top-4 images per neuron, 1 patch of 32², 2
embedding epochs, graph nodes from the top 2 % of each layer: a smoke run, not a study), at the
smallest input side among 64, 96 and 224 that the model builds and runs with; the table gives layers,
neurons, the layouts read (nchw, nhwc, tokens) and seconds per stage, or the message that stopped it.
Models run one after another in --jobs worker processes, each pinned to its share of the CPUs (numba's
first-use compilation is paid once per worker), on --device. With --timm-folder
(an image folder: root/<class>/<image>), timm models with random weights and default parameters run
too, on --timm-images of its images at 224² (`pip install timm`).
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from neurocarto.compute.pipeline import precompute
from neurocarto.config import EmbedParams, ExecutionConfig, GraphParams, PatchParams, RunConfig
from neurocarto.errors import NeuroCartoError

SIZES = (64, 96, 224)
STAGES = ("pass1", "cluster", "embed", "graph", "patches")
TIMM_MODELS = ("mobilenetv3_large_100", "efficientnet_b0", "resnet26d")


def precompute_one(model: str, data: str | None, images: int, size: int | None, cache: str, sweep: bool,
                   device: str) -> dict:
    """Manifest facts of one run of every stage, or the message that stopped it."""
    config = RunConfig(model=model, data=data, max_images=images, image_size=size,
                       **(dict(top_k=4, patches=PatchParams(per_neuron=1, size=32), embed=EmbedParams(epochs=2),
                               graph=GraphParams(top_fraction=0.02)) if sweep else {}))
    try:
        execution = ExecutionConfig(cache=cache, device=device, progress=False, batch_size=32)
        manifest = precompute(config, execution, log=lambda _: None)
    except NeuroCartoError as error:
        return {"message": str(error)}
    except Exception as error:      # a crash is a finding: report it and go on with the next model
        return {"message": f"crashed: {type(error).__name__}: {error}"}
    return {"layers": manifest["layers"], "neurons": manifest["counts"]["neurons"],
            "seconds": {name: stage["seconds"] for name, stage in manifest["stages"].items()}}


INTRO = """# Models: torchvision's classifiers, and timm's

Classification models of torchvision, each through every stage (pass 1, cluster, embed, graph, patches)
with its default layer map and random weights (seeded), on {images} images of --data (here three
Fashion-MNIST classes, Trouser, Sneaker and Bag, written as PNGs in class folders), at the smallest
input side among 64, 96 and 224 that the model builds and runs with (ViTs are built for that size;
MaxViT needs 224), keeping the top 4 images per neuron, 1 patch of 32², 2 embedding epochs and graph
nodes from the top 2 % of each layer: a smoke run of every code path, not a study. Then timm models
with random weights and default parameters on {timm_images} images of an image folder (Fashion-MNIST
test images in class folders) at 224². Machine: {machine}; the first model of each worker
process includes numba's first-use compilation in its wall time.

```bash
python benchmarks/model_matrix.py --data FOLDER --out docs/models.md --timm-folder FOLDER {options}
```

Layouts: `nchw` feature maps, `nhwc` channels-last maps (Swin), `tokens` transformer tokens on the
patch grid (ViT). Stage times are those the manifest records.

"""

TIMM_FACTORY = """
import timm


def make():
    return timm.create_model({name!r}, pretrained=False, num_classes={classes})
"""


def run_one(model: str, data: str | None, images: int, size: int | None, sweep: bool, device: str
            ) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        result = precompute_one(model, data, images, size, cache, sweep, device)
        wall = time.perf_counter() - started
    gc.collect()
    return result, wall


def sweep_row(model: str, data: str | None, images: int, device: str) -> str:
    """The table row of one torchvision model, at the smallest input side it builds and runs with."""
    for size in SIZES:
        result, wall = run_one(model, data, images, size, True, device)
        if "message" not in result or "image-size" not in result["message"]:
            break
    return row(model, result, size, wall)


def timm_row(name: str, folder: str, images: int, device: str) -> str:
    classes = sum(1 for path in Path(folder).iterdir() if path.is_dir())
    with tempfile.TemporaryDirectory() as factory_folder:
        factory = Path(factory_folder) / f"timm_{name}.py"
        factory.write_text(TIMM_FACTORY.format(name=name, classes=classes))
        result, wall = run_one(f"{factory}:make", folder, images, 224, False, device)
    return row(f"timm {name}", result, 224, wall)


def pin_worker(slots) -> None:
    """Give this worker process one share of the CPUs; the pipeline sizes its thread pools to it."""
    os.sched_setaffinity(0, slots.get())


def machine(device: str, jobs: int) -> str:
    import torch
    import torchvision
    cores = len(os.sched_getaffinity(0))
    gpu = (f", {torch.cuda.get_device_name()}" if device != "cpu" and torch.cuda.is_available() else "")
    where = f"{jobs} worker processes sharing {cores} CPU cores" if jobs > 1 else f"one process, {cores} CPU cores"
    return (f"{where}{gpu} ({platform.machine()}, torch {torch.__version__.split('+')[0]}, "
            f"torchvision {torchvision.__version__.split('+')[0]})")


def row(model: str, result: dict, size: int | None, wall: float) -> str:
    if "message" in result:
        return f"| {model} | {size or '—'} | message: {result['message'][:160]} | | | | | |"
    layouts = sorted({layer.get("layout", "nchw") for layer in result["layers"]})
    seconds = " / ".join(f"{result['seconds'].get(stage, 0):.1f}" for stage in STAGES)
    return (f"| {model} | {size or 224} | runs | {len(result['layers'])} | {result['neurons']} | "
            f"{', '.join(layouts)} | {seconds} | {wall:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--data", help="data of the torchvision sweep (default: Fashion-MNIST)")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--timm-folder")
    parser.add_argument("--timm-images", type=int, default=1000)
    parser.add_argument("--timm-only", action="store_true", help="skip the torchvision sweep")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes, each with its share of the CPUs")
    args = parser.parse_args()
    from neurocarto.inputs.models import torchvision_classifiers
    models = [] if args.timm_only else args.only or torchvision_classifiers()
    tasks = [(model, (sweep_row, model, args.data, args.images, args.device)) for model in models]
    if args.timm_folder:
        tasks += [(f"timm {name}", (timm_row, name, args.timm_folder, args.timm_images, args.device))
                  for name in TIMM_MODELS]
    header = [("| model | input | result | layers | neurons | layouts | pass1 / cluster / embed / graph / patches (s) "
               "| wall (s) |"), "|---|---:|---|---:|---:|---|---|---:|"]
    options = " ".join(f"--{name} {value}" for name, value in (("device", args.device), ("jobs", args.jobs))
                       if value not in ("auto", 1))
    intro = INTRO.format(images=args.images, timm_images=args.timm_images, machine=machine(args.device, args.jobs),
                         options=options)
    rows: dict[str, str] = {}

    def add(name: str, line: str) -> None:
        rows[name] = line
        print(line, flush=True)
        if args.out:            # written after every model, in list order, so a long sweep can be read as it goes
            args.out.parent.mkdir(parents=True, exist_ok=True)
            done = [rows[name] for name, _ in tasks if name in rows]
            args.out.write_text(intro + "\n".join(header + done) + "\n")

    print("\n".join(header), flush=True)
    if args.jobs == 1:
        for name, (function, *arguments) in tasks:
            add(name, function(*arguments))
        return
    cores = sorted(os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for job in range(args.jobs):
        slots.put(set(cores[job::args.jobs]))
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=pin_worker, initargs=(slots,)) as pool:
        futures = {pool.submit(function, *arguments): name for name, (function, *arguments) in tasks}
        for future in as_completed(futures):
            add(futures[future], future.result())


if __name__ == "__main__":
    main()
