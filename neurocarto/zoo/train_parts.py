"""Train the Parts model (FashionInception on 64×64 RGB, stride-2 stem) on generated Parts images.

    python -m neurocarto.zoo.train_parts [--epochs 5] [--train 24000] [--seed 0] [--out PATH]
                                         [--without CLASS] [--checkpoints DIR] [--device cpu|cuda]

Training images are Parts seed 1 and test images Parts seed 2, so neither overlaps the images a run
on `--data parts` (seed 0) explains. Seeded; prints test accuracy each epoch; writes the weights
`--model parts-inception` uses (neurocarto/zoo/weights/parts_inception.pt). `--without CLASS` trains on the other
classes' images only (the model keeps its six outputs); `--checkpoints DIR` also writes the weights before training
(`epoch_0.pt`) and after each epoch (`epoch_N.pt`), for runs compared over training (`--weights DIR/epoch_N.pt`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from neurocarto.inputs.models import PARTS_MEAN, PARTS_STD, ZOO
from neurocarto.zoo.parts import CLASS_NAMES, PartsDataset
from neurocarto.zoo.training import fit

WEIGHTS = ZOO["parts-inception"].weights_path


def generated(n_images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 64, 64) uint8 images and their labels."""
    dataset = PartsDataset(n_images, seed)
    images = np.stack([np.asarray(dataset.load(i)) for i in range(n_images)]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.tensor([dataset.label(i) for i in range(n_images)])


def normalised(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255).sub_(PARTS_MEAN).div_(PARTS_STD)


def train(epochs: int, n_train: int, n_test: int, seed: int, batch_size: int, lr: float, without: str | None = None,
          checkpoints: Path | None = None, device: str = "cpu"):
    torch.manual_seed(seed)
    x_train, y_train = generated(n_train, 1)
    x_test, y_test = generated(n_test, 2)
    if without is not None:
        kept = y_train != CLASS_NAMES.index(without)
        x_train, y_train = x_train[kept], y_train[kept]
    model = ZOO["parts-inception"].build()

    def keep(epoch: int, _accuracy: float = 0.0) -> None:
        if checkpoints is not None:
            checkpoints.mkdir(parents=True, exist_ok=True)
            torch.save({name: value.cpu() for name, value in model.state_dict().items()}, checkpoints / f"epoch_{epoch}.pt")

    keep(0)
    return model, fit(model, x_train, y_train, x_test, y_test, epochs, seed, batch_size, lr, to_input=normalised,
                      after_epoch=keep, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train", type=int, default=24_000, help="generated training images")
    parser.add_argument("--test", type=int, default=3_000, help="generated test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--without", choices=CLASS_NAMES, default=None, help="leave this class's images out")
    parser.add_argument("--checkpoints", type=Path, default=None, metavar="DIR",
                        help="also keep the weights before training and after each epoch here")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = parser.parse_args()
    model, accuracy = train(args.epochs, args.train, args.test, args.seed, args.batch_size, args.lr, args.without,
                            args.checkpoints, args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({name: value.cpu() for name, value in model.state_dict().items()}, args.out)
    print(f"test accuracy {accuracy:.4f}; weights written to {args.out}")


if __name__ == "__main__":
    main()
