"""Typed run configuration. What defines a run's results is hashed into its store key."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from neurocarto.errors import NeuroCartoError

DEFAULT_CACHE = Path("cache")


@dataclass(frozen=True)
class ClusterParams:
    """Neuron clustering (`concepts/cluster.py`, `compute/coactivation.py`)."""

    threshold: float | None = None  # the cut (average Jaccard of top-k sets); None: each layer's own, from its null
    floor: float = 0.05           # similar pairs and the merge order are kept down to this Jaccard
    null_quantile: float = 0.995  # a layer's cut: this quantile of Jaccard between its neurons and other layers'
    mean_multiple: float = 5.0    # … and at least this many times the mean Jaccard of random pairs of the layer
    max_share: float = 0.15       # no cluster holds more than this share of its layer
    recall: float = 0.97          # P(candidate) at the floor, which sets the LSH banding
    max_hashes: int = 128
    per_layer: bool = True
    method: str = "lsh"           # lsh | exact (sparse all pairs)
    sample: int = 8               # shared top images checked per pair for co-activation
    active: float = 0.5           # active where a map reaches this share of its maximum
    overlap: float = 0.5          # co-active when the active places' Jaccard reaches this
    min_coactive: float = 0.25    # keep pairs co-active on at least this share of the sample
    seed: int = 1

    def check(self) -> None:
        if self.method not in ("lsh", "exact"):
            raise NeuroCartoError(f"--cluster-method {self.method!r}: valid: lsh, exact")
        for name in ("floor", "null_quantile", "max_share", "recall", "active", "overlap", "min_coactive"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise NeuroCartoError(f"cluster {name} must be in (0, 1] (got {value})")
        if not self.mean_multiple >= 0:
            raise NeuroCartoError(f"cluster mean_multiple must be 0 or more (got {self.mean_multiple})")
        if self.threshold is not None and not self.floor <= self.threshold <= 1:
            raise NeuroCartoError(f"--cluster-cut {self.threshold}: the cut must be between the floor "
                                  f"{self.floor} and 1, or auto (each layer's own)")


@dataclass(frozen=True)
class EmbedParams:
    """Co-occurrence embedding and projection (`concepts/embed.py`)."""

    dimensions: int = 30
    epochs: int = 5
    window: int = 5
    negatives: int = 5
    learning_rate: float = 0.025
    threads: int = 1              # 1: deterministic for the seed
    neighbors: int = 20
    seed: int = 0
    projection_seed: int | None = None   # a seed makes UMAP reproducible (and single-threaded)

    def check(self) -> None:
        for name in ("dimensions", "epochs", "window", "neighbors", "threads"):
            if getattr(self, name) < 1:
                raise NeuroCartoError(f"embedding {name} must be at least 1 (got {getattr(self, name)})")


@dataclass(frozen=True)
class GraphParams:
    """Per-class graphs (`compute/attribution.py`)."""

    top_fraction: float = 0.1
    images_per_class: int | None = None   # None: all when the run has ≤ 10,000 images, else 10,000 / classes (≥ 50)
    max_in_edges: int = 10
    max_neurons: int = 32                 # chosen neurons per layer at most; 0: no limit
    seed: int = 0

    def neuron_limit(self) -> int | None:
        return self.max_neurons or None

    def per_class(self, n_images: int, n_classes: int) -> int | None:
        if self.images_per_class is not None:
            return self.images_per_class
        return None if n_images <= 10_000 else max(50, 10_000 // max(n_classes, 1))

    def check(self) -> None:
        if not 0 < self.top_fraction <= 1:
            raise NeuroCartoError(f"--graph-top-fraction must be in (0, 1] (got {self.top_fraction})")
        if self.max_neurons < 0:
            raise NeuroCartoError(f"--graph-max-neurons must be 0 (no limit) or more (got {self.max_neurons})")
        if self.images_per_class is not None and self.images_per_class < 1:
            raise NeuroCartoError(f"--graph-images must be at least 1 (got {self.images_per_class})")


@dataclass(frozen=True)
class PatchParams:
    """Example patches (`compute/patches.py`)."""

    per_neuron: int = 20
    size: int = 64
    min_size: int = 16

    def check(self) -> None:
        if self.per_neuron < 1 or self.size < 8 or self.min_size < 1:
            raise NeuroCartoError("--patches must be ≥ 1, patch size ≥ 8 and minimum crop ≥ 1 pixel")


@dataclass(frozen=True)
class DictionaryParams:
    """A layer's sparse dictionary (`compute/dictionary.py`): TopK latents, `expansion` × the layer's channels."""

    expansion: int = 8
    k: int | None = None                # latents firing per vector; None: latents / 16, at most 32
    vectors: int = 100_000              # activation vectors trained on
    per_image: int = 16                 # positions sampled per image
    epochs: int = 4
    batch_size: int = 1024
    learning_rate: float = 3e-3
    images: int = 1000                  # held-out images the quality and accuracy are measured on
    seed: int = 0

    def latents(self, channels: int) -> int:
        return self.expansion * channels

    def k_for(self, channels: int) -> int:
        return self.k if self.k is not None else max(1, min(32, self.latents(channels) // 16))

    def check(self, channels: int) -> None:
        for name in ("expansion", "vectors", "per_image", "epochs", "batch_size", "images"):
            if getattr(self, name) < 1:
                raise NeuroCartoError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if not 1 <= self.k_for(channels) <= self.latents(channels):
            raise NeuroCartoError(f"--k {self.k}: a dictionary of {self.latents(channels)} latents "
                                  f"({self.expansion} × {channels} channels) takes k from 1 to {self.latents(channels)}")
        if not self.learning_rate > 0:
            raise NeuroCartoError(f"--learning-rate must be positive (got {self.learning_rate})")


UNITS = ("neurons", "dictionary", "both")     # a run's units: channels, dictionary latents, or the two side by side


@dataclass(frozen=True)
class RunConfig:
    """What a run computes. Everything here but `name` changes its results."""

    model: str | None = None           # None: the default zoo model
    weights: str | None = None
    data: str | None = None            # None: Fashion-MNIST
    layers: tuple[str, ...] | None = None
    top_k: int | None = None           # None: 2·√images, within [100, 1000] and at most a quarter of the images
    threshold: float = 0.03            # Summit's cumulative-share threshold for A
    max_images: int | None = None
    seed: int = 0
    amp: bool = False
    image_size: int | None = None      # input side for torchvision/factory models (default 224)
    name: str | None = None
    cluster: ClusterParams = ClusterParams()
    embed: EmbedParams = EmbedParams()
    graph: GraphParams = GraphParams()
    patches: PatchParams = PatchParams()
    units: str = "neurons"             # neurons | dictionary (each layer's dictionary latents) | both
    dictionary: DictionaryParams = DictionaryParams()

    def check(self) -> None:
        if self.units not in UNITS:
            raise NeuroCartoError(f"--units {self.units!r}: valid: {', '.join(UNITS)}")
        if self.top_k is not None and self.top_k < 1:
            raise NeuroCartoError(f"--top-k must be at least 1 (got {self.top_k})")
        if not 0 < self.threshold <= 1:
            raise NeuroCartoError(f"--threshold must be in (0, 1] (got {self.threshold})")
        if self.image_size is not None and self.image_size < 16:
            raise NeuroCartoError(f"--image-size must be at least 16 pixels (got {self.image_size})")
        if self.max_images is not None and self.max_images < 1:
            raise NeuroCartoError(f"--max-images must be at least 1 (got {self.max_images})")
        for params in (self.cluster, self.embed, self.graph, self.patches):
            params.check()

    def as_dict(self) -> dict:
        values = asdict(self)
        values["layers"] = list(self.layers) if self.layers else None
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """The config `as_dict` wrote (a manifest's `config`); unknown keys are ignored."""
        nested = {"cluster": ClusterParams, "embed": EmbedParams, "graph": GraphParams, "patches": PatchParams,
                  "dictionary": DictionaryParams}
        known = {name: value for name, value in values.items() if name in cls.__dataclass_fields__}
        for name, params in nested.items():
            if name in known:
                known[name] = params(**{k: v for k, v in known[name].items() if k in params.__dataclass_fields__})
        if known.get("layers") is not None:
            known["layers"] = tuple(known["layers"])
        return cls(**known)


def default_top_k(n_images: int) -> int:
    """Top images per neuron when not given: 2·√images within [100, 1000], and at most a quarter of the
    images. Two detectors of one concept draw their top sets from the same pool of its images; the larger
    the pool, the more of it the sets must cover for their overlap to rise above sampling noise."""
    return max(1, min(max(100, min(1000, round(2 * n_images ** 0.5))), n_images // 4))


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


def stable_hash(value) -> str:
    """Short hash of a JSON-able value: a run's identity, a stage's inputs."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]
