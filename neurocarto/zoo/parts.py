"""Parts: a generated image dataset whose concepts are known, for measuring how coherent clusters are.

Six object classes, each built from two characteristic parts (a car has wheels and windows, a face
eyes and a mouth, …). Every part instance is drawn in one of three colour families, so that several
neurons can detect variants of the same part; a third of the images also hold one part of another
class, and backgrounds vary (gradient, noise, clutter that is no part). Each image comes with a map
of which part is where (0: background), drawn with the same shapes.

Images are made on the fly from (seed, index), so a dataset is its three numbers: `--data parts`
(12,000 images, seed 0) or `--data parts:N[:SEED]`.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
CLASS_NAMES = ["car", "face", "house", "flower", "fish", "robot"]
PART_NAMES = ["background", "wheel", "window", "eye", "mouth", "roof", "door", "petals", "leaf", "fin", "stripes",
              "bolt", "antenna"]
PARTS_OF_CLASS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]     # part ids of each class
OBJECT_OF_PART = np.array([-1] + [c for c, parts in enumerate(PARTS_OF_CLASS) for _ in parts])
FAMILIES = [((200, 40, 40), (240, 140, 30)), ((30, 80, 210), (40, 190, 220)), ((40, 160, 60), (200, 200, 40))]
GENERATOR_VERSION = 1
DEFAULT_IMAGES, DEFAULT_SEED = 12_000, 0


def _draw_part(draw: ImageDraw.ImageDraw, part: int, x: float, y: float, s: float, fill, accent) -> None:
    """One part centred at (x, y), about s pixels wide: `fill` for its body, `accent` for its detail."""
    h = s / 2
    if part == 1:        # wheel: a thick ring and its hub
        draw.ellipse((x - h, y - h, x + h, y + h), outline=fill, width=max(2, int(s / 5)))
        draw.ellipse((x - s / 8, y - s / 8, x + s / 8, y + s / 8), fill=accent)
    elif part == 2:      # window: a framed square with a cross
        draw.rectangle((x - h, y - h, x + h, y + h), outline=fill, width=2)
        draw.line((x, y - h, x, y + h), fill=accent, width=2)
        draw.line((x - h, y, x + h, y), fill=accent, width=2)
    elif part == 3:      # eye: a disc and its pupil
        draw.ellipse((x - h, y - h * 0.7, x + h, y + h * 0.7), fill=fill)
        draw.ellipse((x - s / 6, y - s / 6, x + s / 6, y + s / 6), fill=accent)
    elif part == 4:      # mouth: a thick smiling arc
        draw.arc((x - h, y - h, x + h, y + h), 20, 160, fill=fill, width=max(2, int(s / 5)))
    elif part == 5:      # roof: a triangle pointing up
        draw.polygon([(x - h, y + h * 0.6), (x + h, y + h * 0.6), (x, y - h * 0.8)], fill=fill)
    elif part == 6:      # door: a tall rectangle with a knob
        draw.rectangle((x - h * 0.5, y - h, x + h * 0.5, y + h), fill=fill)
        draw.ellipse((x + h * 0.15, y - 1.5, x + h * 0.45, y + 1.5), fill=accent)
    elif part == 7:      # petals: six small discs around a centre
        for angle in np.linspace(0, 2 * np.pi, 6, endpoint=False):
            px, py = x + h * 0.62 * np.cos(angle), y + h * 0.62 * np.sin(angle)
            draw.ellipse((px - s / 7, py - s / 7, px + s / 7, py + s / 7), fill=fill)
        draw.ellipse((x - s / 8, y - s / 8, x + s / 8, y + s / 8), fill=accent)
    elif part == 8:      # leaf: a pointed lens with a midrib
        draw.polygon([(x - h, y + h * 0.5), (x - h * 0.2, y - h * 0.2), (x + h, y - h * 0.5),
                      (x + h * 0.2, y + h * 0.2)], fill=fill)
        draw.line((x - h, y + h * 0.5, x + h, y - h * 0.5), fill=accent, width=1)
    elif part == 9:      # fin: a triangle pointing sideways
        draw.polygon([(x - h, y), (x + h, y - h * 0.8), (x + h, y + h * 0.8)], fill=fill)
    elif part == 10:     # stripes: three thick diagonal bars
        for offset in (-h * 0.6, 0, h * 0.6):
            draw.line((x - h + offset, y + h, x + offset, y - h), fill=fill if offset else accent, width=3)
    elif part == 11:     # bolt: a thick plus sign
        draw.rectangle((x - h, y - s / 8, x + h, y + s / 8), fill=fill)
        draw.rectangle((x - s / 8, y - h, x + s / 8, y + h), fill=accent)
    elif part == 12:     # antenna: a mast with a ball on top
        draw.line((x, y + h, x, y - h * 0.4), fill=fill, width=2)
        draw.ellipse((x - s / 5, y - h, x + s / 5, y - h + s * 0.4), fill=accent)


def _colour(rng: np.random.Generator, base) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.asarray(base) + rng.integers(-25, 26, 3), 0, 255))


def generate(seed: int, index: int, label: int) -> tuple[Image.Image, np.ndarray]:
    """Image `index` of class `label` and its part map, the same for the same (seed, index)."""
    rng = np.random.default_rng([seed, index, GENERATOR_VERSION])
    base = rng.integers(60, 200, 3)
    ramp = np.linspace(-1, 1, SIZE)
    direction = rng.normal(size=2)
    gradient = (ramp[None, :] * direction[0] + ramp[:, None] * direction[1])[..., None] * rng.integers(10, 40, 3)
    pixels = np.clip(base + gradient + rng.normal(0, 10, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    image, part_map = Image.fromarray(pixels), Image.new("L", (SIZE, SIZE), 0)
    draw, map_draw = ImageDraw.Draw(image), ImageDraw.Draw(part_map)
    for _ in range(rng.integers(0, 3)):      # clutter: not a part, so background in the map
        x, y, r = rng.uniform(0, SIZE, 2).tolist() + [float(rng.uniform(3, 8))]
        draw.ellipse((x - r, y - r * 0.5, x + r, y + r * 0.5), outline=_colour(rng, base), width=1)
    parts = [p for p in PARTS_OF_CLASS[label] for _ in range(rng.integers(1, 3))]
    if rng.random() < 1 / 3:
        other = (label + rng.integers(1, len(CLASS_NAMES))) % len(CLASS_NAMES)
        parts.append(PARTS_OF_CLASS[other][rng.integers(0, 2)])
    cells = rng.permutation(9)[:len(parts)]
    for part, cell in zip(rng.permutation(parts), cells):
        x = (cell % 3 + 0.5) * SIZE / 3 + rng.uniform(-3, 3)
        y = (cell // 3 + 0.5) * SIZE / 3 + rng.uniform(-3, 3)
        s = rng.uniform(13, 18)
        fill, accent = FAMILIES[rng.integers(0, len(FAMILIES))]
        fill = _colour(rng, fill)
        accent = tuple(255 - v for v in fill) if rng.random() < 0.5 else _colour(rng, accent)
        _draw_part(draw, int(part), x, y, s, fill, accent)
        _draw_part(map_draw, int(part), x, y, s, int(part), int(part))
    return image, np.asarray(part_map)


@dataclass
class PartsDataset:
    """`n_images` generated images, classes in turn (index mod 6), with their part maps."""

    n_images: int = DEFAULT_IMAGES
    seed: int = DEFAULT_SEED
    kind = "parts"
    class_names = tuple(CLASS_NAMES)

    @property
    def fingerprint(self) -> str:
        text = f"parts-v{GENERATOR_VERSION}-{self.n_images}-{self.seed}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return self.n_images

    def label(self, index: int) -> int:
        return int(index) % len(CLASS_NAMES)

    def load(self, index: int) -> Image.Image:
        return generate(self.seed, int(index), self.label(index))[0]

    def part_map(self, index: int) -> np.ndarray:
        return generate(self.seed, int(index), self.label(index))[1]

    def describe(self) -> str:
        return f"Parts ({self.n_images} generated images, seed {self.seed})"

    @classmethod
    def from_spec(cls, spec: str) -> "PartsDataset":
        """`parts`, `parts:N` or `parts:N:SEED`."""
        fields = spec.split(":")[1:]
        n_images = int(fields[0]) if fields else DEFAULT_IMAGES
        seed = int(fields[1]) if len(fields) > 1 else DEFAULT_SEED
        return cls(n_images, seed)


def part_counts(top_images: np.ndarray, top_values: np.ndarray, top_positions: np.ndarray,
                grids: list[tuple[int, int]], part_map: Callable[[int], np.ndarray], n_parts: int) -> np.ndarray:
    """(neurons, parts): how many of each neuron's top images show each part under its argmax (0: background).
    Rows are the given neurons' (`grids[i]`: the height and width of row i's layer). Under the argmax = the map cell of the position
    widened by half a cell on each side; its most common non-background part, else background. Entries where
    the neuron did not fire count as background. `part_map(run image id)` gives an image's part map."""
    found = np.zeros((len(top_images), n_parts), dtype=np.int64)
    for neuron, (height, width) in enumerate(grids):
        for image, value, position in zip(top_images[neuron], top_values[neuron], top_positions[neuron]):
            if value <= 0:
                found[neuron, 0] += 1
                continue
            found[neuron, part_under(part_map(int(image)), int(position), height, width, n_parts)] += 1
    return found


def part_under(parts: np.ndarray, position: int, height: int, width: int, n_parts: int = len(PART_NAMES)) -> int:
    """The part under a flat `position` of a height × width map laid over the image's part map: the most common
    non-background part in its cell widened by half a cell on each side, else 0 (background)."""
    cell_h, cell_w = parts.shape[0] / height, parts.shape[1] / width
    y, x = divmod(int(position), width)
    window = parts[max(0, math.floor((y - 0.5) * cell_h)):math.ceil((y + 1.5) * cell_h),
                   max(0, math.floor((x - 0.5) * cell_w)):math.ceil((x + 1.5) * cell_w)]
    counts = np.bincount(window.ravel(), minlength=n_parts)
    return int(np.argmax(counts[1:])) + 1 if counts[1:].any() else 0


class PartLabels:
    """On Parts data, which part each neuron's top images show under its argmax (`zoo.parts.part_counts`),
    computed for the neurons asked about, once."""

    def __init__(self, spec: str, image_index: np.ndarray, top_images: np.ndarray, top_values: np.ndarray,
                 top_positions: np.ndarray, grids: list[tuple[int, int]]):
        dataset = PartsDataset.from_spec(spec)
        self.names = PART_NAMES
        self._map = lru_cache(maxsize=4096)(lambda image: dataset.part_map(int(image_index[image])))
        self._arrays = (top_images, top_values, top_positions)
        self._grids = grids
        self._counts: dict[int, np.ndarray] = {}

    def counts(self, neurons: tuple[int, ...]) -> np.ndarray:
        """Summed over these neurons: how many top images show each part."""
        missing = [n for n in neurons if n not in self._counts]
        if missing:
            images, values, positions = (array[missing] for array in self._arrays)
            found = part_counts(images, values, positions, [self._grids[n] for n in missing], self._map, len(self.names))
            self._counts.update(zip(missing, found))
        return np.sum([self._counts[n] for n in neurons], axis=0)
