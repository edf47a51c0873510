"""Train the default FashionInception on Fashion-MNIST's 60,000 training images.

    python -m neurocarto.zoo.train_fashion [--epochs 8] [--seed 0] [--out PATH]

Seeded; prints test accuracy on the 10,000 test images each epoch; writes the weights that
`python app.py` uses (neurocarto/zoo/weights/fashion_inception.pt).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..data import open_dataset
from .fashion_inception import MEAN, STD, FashionInception

WEIGHTS = Path(__file__).parent / "weights" / "fashion_inception.pt"


def _as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images).float().div_(255).sub_(MEAN).div_(STD).unsqueeze(1)
    return x, torch.from_numpy(labels)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            correct += (model(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum().item()
    return correct / len(x)


def train(epochs: int, seed: int, batch_size: int, lr: float, data: str | None) -> tuple[FashionInception, float]:
    torch.manual_seed(seed)
    dataset = open_dataset(data, Path("cache"))
    n_train = dataset.split_sizes["train"]
    x_train, y_train = _as_tensors(dataset.images[:n_train], dataset.labels[:n_train])
    x_test, y_test = _as_tensors(dataset.images[n_train:], dataset.labels[n_train:])
    model = FashionInception()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * (n_train // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    accuracy = 0.0
    for epoch in range(epochs):
        model.train()
        started, order = time.time(), torch.randperm(n_train, generator=generator)
        for start in range(0, n_train - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            x = x_train[index]
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(model(x), y_train[index], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        accuracy = evaluate(model, x_test, y_test)
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, test accuracy {accuracy:.4f} "
              f"({time.time() - started:.0f} s)", flush=True)
    return model, accuracy


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
