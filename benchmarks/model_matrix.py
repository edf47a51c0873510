"""Every torchvision classifier through every stage with its default layer map.

    python benchmarks/model_matrix.py [--images 40] [--out docs/models.md] [--only resnet18 vit_b_16 …]
                                      [--timm-folder DIR] [--timm-images 1000]

Each of `torchvision.models.list_models(module=torchvision.models)` runs `precompute` (all stages) with
random weights (seeded) on --images Fashion-MNIST images, at the smallest input side among 64, 96 and 224
that the model builds and runs with; the table gives layers, neurons, the layouts read (nchw, nhwc,
tokens) and seconds per stage, or the message that stopped it. Every model runs in a fresh process.
With --timm-folder (an image folder: root/<class>/<image>), timm models with random weights run too,
on --timm-images of its images at 224² (`pip install timm`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (64, 96, 224)
STAGES = ("pass1", "cluster", "embed", "graph", "patches")
TIMM_MODELS = ("mobilenetv3_large_100", "efficientnet_b0", "resnet26d", "regnetx_002", "convnext_atto",
               "ghostnet_100")

ONE_RUN = """
import json, sys
from neurocarto.cli import guarded
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.errors import NeuroCartoError
from neurocarto.pipeline import precompute
model, data, images, size, cache = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), sys.argv[4], sys.argv[5]
config = RunConfig(model=model, data=data, max_images=images, top_k=min(20, images // 2),
                   image_size=int(size) if size != "none" else None)
try:
    manifest = precompute(config, ExecutionConfig(cache=cache, progress=False, batch_size=32), log=lambda _: None)
except NeuroCartoError as error:
    print(json.dumps({"message": str(error)}))
else:
    print(json.dumps({"layers": manifest["layers"], "neurons": manifest["counts"]["neurons"],
                      "seconds": {name: stage["seconds"] for name, stage in manifest["stages"].items()}}))
"""

INTRO = """# Models: every torchvision classifier, and timm's

Every classification model `torchvision.models.list_models(module=torchvision.models)` lists, through
every stage (pass 1, cluster, embed, graph, patches) with its default layer map, random weights
(seeded), on {images} Fashion-MNIST images at the smallest input side among 64, 96 and 224 that the
model builds and runs with (ViTs are built for that size; MaxViT needs 224). Then timm models with
random weights on {timm_images} images of an image folder (Fashion-MNIST test images written as PNGs
in class folders) at 224². Each model runs in a fresh process on 2 CPU cores, so its wall time
includes importing torch and numba's first-use compilation (~20-30 s).

```bash
python benchmarks/model_matrix.py --out docs/models.md --timm-folder FOLDER   # pip install timm
```

Layouts: `nchw` feature maps, `nhwc` channels-last maps (Swin), `tokens` transformer tokens on the
patch grid (ViT). Stage times are those the manifest records.

"""

TIMM_FACTORY = """
import timm


def make():
    return timm.create_model({name!r}, pretrained=False, num_classes={classes})
"""


def run_one(model: str, data: str | None, images: int, size: int | None) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", ONE_RUN, model, data or "", str(images), str(size or "none"),
                               cache], capture_output=True, text=True)
        wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"message": "crashed: " + (done.stderr.strip().splitlines() or ["no output"])[-1]}, wall
    return json.loads(lines[-1]), wall


def row(model: str, result: dict, size: int | None, wall: float) -> str:
    if "message" in result:
        return f"| {model} | {size or '—'} | message: {result['message'][:160]} | | | | | |"
    layouts = sorted({layer.get("layout", "nchw") for layer in result["layers"]})
    seconds = " / ".join(f"{result['seconds'].get(stage, 0):.1f}" for stage in STAGES)
    return (f"| {model} | {size or 224} | runs | {len(result['layers'])} | {result['neurons']} | "
            f"{', '.join(layouts)} | {seconds} | {wall:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--timm-folder")
    parser.add_argument("--timm-images", type=int, default=1000)
    args = parser.parse_args()
    from neurocarto.models import torchvision_classifiers
    header = ["| model | input | result | layers | neurons | layouts | pass1 / cluster / embed / graph / patches (s) "
              "| wall (s) |", "|---|---:|---|---:|---:|---|---|---:|"]
    lines = list(header)
    print("\n".join(header), flush=True)
    for model in args.only or torchvision_classifiers():
        for size in SIZES:
            result, wall = run_one(model, None, args.images, size)
            if "message" not in result or "image-size" not in result["message"]:
                break
        lines.append(row(model, result, size, wall))
        print(lines[-1], flush=True)
    if args.timm_folder:
        classes = sum(1 for path in Path(args.timm_folder).iterdir() if path.is_dir())
        with tempfile.TemporaryDirectory() as folder:
            for name in TIMM_MODELS:
                factory = Path(folder) / f"timm_{name}.py"
                factory.write_text(TIMM_FACTORY.format(name=name, classes=classes))
                result, wall = run_one(f"{factory}:make", args.timm_folder, args.timm_images, 224)
                lines.append(row(f"timm {name}", result, 224, wall))
                print(lines[-1], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(INTRO.format(images=args.images, timm_images=args.timm_images) + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
