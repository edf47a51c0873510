"""Every torchvision classifier through every stage with its default layer map.

    python benchmarks/model_matrix.py [--images 48] [--data DIR] [--out docs/models.md] [--only resnet18 vit_b_16 …]
                                      [--timm-folder DIR] [--timm-images 1000] [--timm-only]

Each of `torchvision.models.list_models(module=torchvision.models)` runs `precompute` (all stages) with
random weights (seeded) on --images images of --data (default Fashion-MNIST; top-4 images per neuron, 1 patch of 32², 2
embedding epochs, graph nodes from the top 2 % of each layer: a smoke run, not a study), at the
smallest input side among 64, 96 and 224 that the model builds and runs with; the table gives layers,
neurons, the layouts read (nchw, nhwc, tokens) and seconds per stage, or the message that stopped it.
All models run in this one process (numba's first-use compilation is paid once). With --timm-folder
(an image folder: root/<class>/<image>), timm models with random weights and default parameters run
too, on --timm-images of its images at 224² (`pip install timm`).
"""
from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

from neurocarto.config import EmbedParams, ExecutionConfig, GraphParams, PatchParams, RunConfig
from neurocarto.errors import NeuroCartoError
from neurocarto.pipeline import precompute

SIZES = (64, 96, 224)
STAGES = ("pass1", "cluster", "embed", "graph", "patches")
TIMM_MODELS = ("mobilenetv3_large_100", "efficientnet_b0", "resnet26d")


def precompute_one(model: str, data: str | None, images: int, size: int | None, cache: str, sweep: bool) -> dict:
    """Manifest facts of one run of every stage, or the message that stopped it."""
    config = RunConfig(model=model, data=data, max_images=images, image_size=size,
                       **(dict(top_k=4, patches=PatchParams(per_neuron=1, size=32), embed=EmbedParams(epochs=2),
                               graph=GraphParams(top_fraction=0.02)) if sweep else {}))
    try:
        manifest = precompute(config, ExecutionConfig(cache=cache, progress=False, batch_size=32), log=lambda _: None)
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
test images in class folders) at 224². All run in one process on 2 CPU cores; the first model's wall
time includes numba's first-use compilation.

```bash
python benchmarks/model_matrix.py --data FOLDER --out docs/models.md [--only NAME …] [--timm-folder FOLDER]
```

Layouts: `nchw` feature maps, `nhwc` channels-last maps (Swin), `tokens` transformer tokens on the
patch grid (ViT). Stage times are those the manifest records.

"""

TIMM_FACTORY = """
import timm


def make():
    return timm.create_model({name!r}, pretrained=False, num_classes={classes})
"""


def run_one(model: str, data: str | None, images: int, size: int | None, sweep: bool) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        result = precompute_one(model, data, images, size, cache, sweep)
        wall = time.perf_counter() - started
    gc.collect()
    return result, wall


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
    args = parser.parse_args()
    from neurocarto.models import torchvision_classifiers
    lines = ["| model | input | result | layers | neurons | layouts | pass1 / cluster / embed / graph / patches (s) "
             "| wall (s) |", "|---|---:|---|---:|---:|---|---|---:|"]

    def add(line: str) -> None:
        lines.append(line)
        print(line, flush=True)
        if args.out:            # written after every model, so a long sweep can be read as it goes
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(INTRO.format(images=args.images, timm_images=args.timm_images) + "\n".join(lines) + "\n")

    print("\n".join(lines), flush=True)
    for model in [] if args.timm_only else args.only or torchvision_classifiers():
        for size in SIZES:
            result, wall = run_one(model, args.data, args.images, size, True)
            if "message" not in result or "image-size" not in result["message"]:
                break
        add(row(model, result, size, wall))
    if args.timm_folder:
        classes = sum(1 for path in Path(args.timm_folder).iterdir() if path.is_dir())
        with tempfile.TemporaryDirectory() as folder:
            for name in TIMM_MODELS:
                factory = Path(folder) / f"timm_{name}.py"
                factory.write_text(TIMM_FACTORY.format(name=name, classes=classes))
                result, wall = run_one(f"{factory}:make", args.timm_folder, args.timm_images, 224, False)
                add(row(f"timm {name}", result, 224, wall))


if __name__ == "__main__":
    main()
