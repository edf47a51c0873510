"""Train the default FashionInception on Fashion-MNIST's 60,000 training images.

    python -m neurocarto.zoo.train_fashion [--epochs 8] [--seed 0] [--out PATH]

Seeded; prints test accuracy on the 10,000 test images each epoch; writes the weights that
`python app.py` uses (neurocarto/zoo/weights/fashion_inception.pt).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from neurocarto.inputs.data import open_dataset
from neurocarto.inputs.models import DEFAULT_MODEL, ZOO
from neurocarto.zoo.fashion_inception import MEAN, STD, FashionInception
from neurocarto.zoo.training import fit

WEIGHTS = ZOO[DEFAULT_MODEL].weights_path


def _as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images).float().div_(255).sub_(MEAN).div_(STD).unsqueeze(1)
    return x, torch.from_numpy(labels)


def train(epochs: int, seed: int, batch_size: int, lr: float, data: str | None) -> tuple[FashionInception, float]:
    torch.manual_seed(seed)
    dataset = open_dataset(data, Path("cache"))
    n_train = dataset.split_sizes["train"]
    x_train, y_train = _as_tensors(dataset.images[:n_train], dataset.labels[:n_train])
    x_test, y_test = _as_tensors(dataset.images[n_train:], dataset.labels[n_train:])
    model = FashionInception()
    return model, fit(model, x_train, y_train, x_test, y_test, epochs, seed, batch_size, lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--data", default=None, help="folder of Fashion-MNIST IDX files (default: Debian's)")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    model, accuracy = train(args.epochs, args.seed, args.batch_size, args.lr, args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"test accuracy {accuracy:.4f}; weights written to {args.out}")


if __name__ == "__main__":
    main()
