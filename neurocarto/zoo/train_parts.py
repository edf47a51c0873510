"""Train the Parts model (FashionInception on 64×64 RGB, stride-2 stem) on generated Parts images.

    python -m neurocarto.zoo.train_parts [--epochs 5] [--train 24000] [--seed 0] [--out PATH]

Training images are Parts seed 1 and test images Parts seed 2, so neither overlaps the images a run
on `--data parts` (seed 0) explains. Seeded; prints test accuracy each epoch; writes the weights
`--model parts-inception` uses (neurocarto/zoo/weights/parts_inception.pt).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from neurocarto.inputs.models import PARTS_MEAN, PARTS_STD, ZOO
from neurocarto.zoo.parts import PartsDataset
from neurocarto.zoo.training import fit

WEIGHTS = ZOO["parts-inception"].weights_path


def generated(n_images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 64, 64) uint8 images and their labels."""
    dataset = PartsDataset(n_images, seed)
    images = np.stack([np.asarray(dataset.load(i)) for i in range(n_images)]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.tensor([dataset.label(i) for i in range(n_images)])


def normalised(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255).sub_(PARTS_MEAN).div_(PARTS_STD)


def train(epochs: int, n_train: int, n_test: int, seed: int, batch_size: int, lr: float):
    torch.manual_seed(seed)
    x_train, y_train = generated(n_train, 1)
    x_test, y_test = generated(n_test, 2)
    model = ZOO["parts-inception"].build()
    return model, fit(model, x_train, y_train, x_test, y_test, epochs, seed, batch_size, lr, to_input=normalised)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train", type=int, default=24_000, help="generated training images")
    parser.add_argument("--test", type=int, default=3_000, help="generated test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    model, accuracy = train(args.epochs, args.train, args.test, args.seed, args.batch_size, args.lr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"test accuracy {accuracy:.4f}; weights written to {args.out}")


if __name__ == "__main__":
    main()
