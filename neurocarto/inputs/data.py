"""Image datasets: Fashion-MNIST (the default) and image-folder trees, with fingerprints.

Every dataset yields PIL images with integer labels, knows its class names, and has a
fingerprint that changes when its files do. Unreadable images come back as None and are
skipped (and counted) by the pass that reads them.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from neurocarto.errors import NeuroCartoError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
SYNSET = re.compile(r"^n\d{8}$")
SYNSET_NAME_FILES = ("LOC_synset_mapping.txt", "synset_words.txt", "words.txt")


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally .gz): the format of the MNIST family."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise NeuroCartoError(f"{path} is not an unsigned-byte IDX file (MNIST format)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise NeuroCartoError(f"{path} is truncated: header says {shape}, file holds {data.size} bytes")
    return data.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class FashionMNIST:
    """All 70,000 Fashion-MNIST images (60,000 train then 10,000 test) held in memory."""

    images: np.ndarray      # (n, 28, 28) uint8
    labels: np.ndarray      # (n,) int64
    split_sizes: dict
    source: str
    fingerprint: str
    class_names = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )
    kind = "fashion-mnist"

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index], mode="L")

    def label(self, index: int) -> int:
        return int(self.labels[index])

    def describe(self) -> str:
        return f"Fashion-MNIST ({len(self)} images, from {self.source})"

    @classmethod
    def from_directory(cls, directory: Path) -> "FashionMNIST":
        images, labels, sizes, digest = [], [], {}, hashlib.sha256()
        for split, (image_stem, label_stem) in FASHION_FILES.items():
            image_path, label_path = _find_idx(directory, image_stem), _find_idx(directory, label_stem)
            if image_path is None or label_path is None:
                continue
            split_images, split_labels = _read_idx(image_path), _read_idx(label_path)
            if len(split_images) != len(split_labels):
                raise NeuroCartoError(f"{image_path} has {len(split_images)} images but "
                                      f"{label_path} has {len(split_labels)} labels")
            images.append(split_images)
            labels.append(split_labels.astype(np.int64))
            sizes[split] = len(split_labels)
            digest.update(split_images.tobytes())
            digest.update(split_labels.tobytes())
        if not images:
            raise NeuroCartoError(
                f"{directory} holds no Fashion-MNIST files: expected {FASHION_FILES['train'][0]}(.gz) "
                f"and {FASHION_FILES['train'][1]}(.gz), and/or the t10k pair")
        return cls(np.concatenate(images), np.concatenate(labels), sizes, str(directory), digest.hexdigest()[:16])


def _is_fashion_directory(path: Path) -> bool:
    return any(_find_idx(path, stem) for pair in FASHION_FILES.values() for stem in pair)


def _synset_names(root: Path, folders: list[str], model_class_names: list[str] | None) -> list[str]:
    """Readable names for WordNet-synset folders, where something says what they mean."""
    if not all(SYNSET.match(f) for f in folders):
        return folders
    for file_name in SYNSET_NAME_FILES:
        path = root / file_name
        if path.is_file():
            mapping = {}
            for line in path.read_text(errors="replace").splitlines():
                wnid, _, words = line.strip().partition(" ")
                if SYNSET.match(wnid):
                    mapping[wnid] = words.split(",")[0].strip() or wnid
            return [mapping.get(f, f) for f in folders]
    # ImageNet's class index is the sorted synset order: a full tree maps one to one.
    if model_class_names and len(model_class_names) == len(folders):
        return list(model_class_names)
    return folders


@dataclass
class ImageFolder:
    """A tree root/<class>/<image>, classes in sorted folder order (ImageNet's layout)."""

    root: Path
    files: list[str]          # paths relative to root
    labels: np.ndarray
    class_names: list[str]
    folders: list[str]
    fingerprint: str
    kind = "image-folder"

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Image.Image:
        with Image.open(self.root / self.files[index]) as image:
            return image.convert("RGB")

    def label(self, index: int) -> int:
        return int(self.labels[index])

    def describe(self) -> str:
        return f"image folder {self.root} ({len(self)} images, {len(self.class_names)} classes)"

    @classmethod
    def scan(cls, root: Path, model_class_names: list[str] | None = None) -> "ImageFolder":
        folders = sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))
        if not folders:
            raise NeuroCartoError(
                f"{root} has no class folders: expected an image-folder tree root/<class>/<image> "
                "(ImageNet layout), or a folder of Fashion-MNIST IDX files")
        files, labels, digest = [], [], hashlib.sha256()
        for label, folder in enumerate(folders):
            for dirpath, dirnames, filenames in os.walk(root / folder):
                dirnames.sort()
                for file_name in sorted(filenames):
                    if Path(file_name).suffix.lower() in IMAGE_EXTENSIONS:
                        path = Path(dirpath) / file_name
                        relative = str(path.relative_to(root))
                        files.append(relative)
                        labels.append(label)
                        digest.update(f"{relative}\0{path.stat().st_size}\n".encode())
        if not files:
            raise NeuroCartoError(
                f"{root} has {len(folders)} class folders but no image files "
                f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        names = _synset_names(root, folders, model_class_names)
        return cls(root, files, np.array(labels, dtype=np.int64), names, folders, digest.hexdigest()[:16])


def open_dataset(path: str | None, cache_dir: Path, model_class_names: list[str] | None = None):
    """`--data PATH` or `parts[:N[:SEED]]`; else Debian's Fashion-MNIST; else torchvision's download."""
    if path and (path == "parts" or path.startswith("parts:")) and not Path(path).is_dir():
        return _parts(path)
    if path:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise NeuroCartoError(f"--data {path}: no such folder (give an image-folder tree, a "
                                  "folder of Fashion-MNIST IDX files, or parts[:N[:SEED]] for the generated Parts)")
        if _is_fashion_directory(root):
            return FashionMNIST.from_directory(root)
        return ImageFolder.scan(root, model_class_names)
    if _is_fashion_directory(DEBIAN_FASHION_MNIST):
        return FashionMNIST.from_directory(DEBIAN_FASHION_MNIST)
    download_root = cache_dir / "datasets"
    raw = download_root / "FashionMNIST" / "raw"
    if not _is_fashion_directory(raw):
        try:
            from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST
            for train in (True, False):
                TorchvisionFashionMNIST(str(download_root), train=train, download=True)
        except Exception as error:  # network errors come in many types
            raise NeuroCartoError(
                "no Fashion-MNIST found: not in /usr/share/datasets/fashion-mnist (apt-get install "
                f"dataset-fashion-mnist), and torchvision's download failed ({error}); "
                "or give --data PATH") from error
    return FashionMNIST.from_directory(raw)


def _parts(spec: str):
    from neurocarto.zoo.parts import PartsDataset

    try:
        dataset = PartsDataset.from_spec(spec)
    except ValueError:
        dataset = None
    if dataset is None or dataset.n_images < 1:
        raise NeuroCartoError(f"--data {spec}: expected parts, parts:N or parts:N:SEED with whole numbers, N ≥ 1")
    return dataset


def subsample(n_images: int, max_images: int | None, seed: int) -> np.ndarray:
    """Dataset indices a run reads: all, or a seeded sorted sample of max_images of them."""
    if max_images is None or max_images >= n_images:
        return np.arange(n_images, dtype=np.int64)
    if max_images < 1:
        raise NeuroCartoError(f"--max-images must be at least 1 (got {max_images})")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_images, size=max_images, replace=False)).astype(np.int64)


def dataset_summary(dataset) -> dict:
    return {"kind": dataset.kind, "description": dataset.describe(), "images": len(dataset),
            "classes": len(dataset.class_names), "fingerprint": dataset.fingerprint}


