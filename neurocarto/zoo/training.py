"""The zoo's training loop: AdamW with a one-cycle schedule, flip augmentation, test accuracy per epoch."""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000, device: str = "cpu") -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size].to(device))
            correct += (logits.argmax(1).cpu() == y[start:start + batch_size]).sum().item()
    return correct / len(x)


def fit(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
        epochs: int, seed: int, batch_size: int, lr: float,
        to_input: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
        after_epoch: Callable[[int, float], None] = lambda epoch, accuracy: None, device: str = "cpu") -> float:
    """Train in place on `device`; `to_input` turns stored images into model inputs; `after_epoch(epoch, test
    accuracy)` is called after each epoch (from 1). Returns the last test accuracy."""
    model.to(device)
    n_train = len(x_train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * (n_train // batch_size))
    generator = torch.Generator().manual_seed(seed)
    accuracy = 0.0
    for epoch in range(epochs):
        model.train()
        started, order = time.time(), torch.randperm(n_train, generator=generator)
        for start in range(0, n_train - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            x = to_input(x_train[index])
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x).to(device)
            loss = F.cross_entropy(model(x), y_train[index].to(device), label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        accuracy = evaluate(model, to_input(x_test), y_test, batch_size=500, device=device)
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, test accuracy {accuracy:.4f} "
              f"({time.time() - started:.0f} s)", flush=True)
        after_epoch(epoch + 1, accuracy)
    return accuracy
