"""Typed run configuration. What defines a run's results is hashed into its store key."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import NeuroCartoError

DEFAULT_CACHE = Path("cache")


@dataclass(frozen=True)
class RunConfig:
    """What a run computes. Everything here but `name` changes its results."""

    model: str | None = None           # None: the default zoo model
    weights: str | None = None
    data: str | None = None            # None: Fashion-MNIST
    layers: tuple[str, ...] | None = None
    top_k: int = 100
    threshold: float = 0.03            # Summit's cumulative-share threshold for A
    max_images: int | None = None
    seed: int = 0
    amp: bool = False
    image_size: int | None = None      # input side for torchvision/factory models (default 224)
    name: str | None = None

    def check(self) -> None:
        if self.top_k < 1:
            raise NeuroCartoError(f"--top-k must be at least 1 (got {self.top_k})")
        if not 0 < self.threshold <= 1:
            raise NeuroCartoError(f"--threshold must be in (0, 1] (got {self.threshold})")
        if self.image_size is not None and self.image_size < 16:
            raise NeuroCartoError(f"--image-size must be at least 16 pixels (got {self.image_size})")
        if self.max_images is not None and self.max_images < 1:
            raise NeuroCartoError(f"--max-images must be at least 1 (got {self.max_images})")

    def as_dict(self) -> dict:
        values = asdict(self)
        values["layers"] = list(self.layers) if self.layers else None
        return values


@dataclass(frozen=True)
class ExecutionConfig:
    """How a run is computed: changes speed, never results."""

    cache: Path = DEFAULT_CACHE
    device: str = "auto"               # auto | cpu | cuda[:N]
    batch_size: int = 256
    workers: int = 0
    checkpoint_every: int = 20         # batches between pass-1 checkpoints
    progress: bool = True

    def check(self) -> None:
        if self.batch_size < 1:
            raise NeuroCartoError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.workers < 0:
            raise NeuroCartoError(f"--workers must be 0 or more (got {self.workers})")
        if self.checkpoint_every < 1:
            raise NeuroCartoError(f"--checkpoint-every must be at least 1 (got {self.checkpoint_every})")


def run_key(identity: dict) -> str:
    """Stable short hash of a run's identity (model, weights checksum, data fingerprint, layers, parameters)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
