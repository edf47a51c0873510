"""`explain --figure`: one explained image as a figure — the image, its prediction, and where on it each of its
most lit concepts fires (heat maps over the image, with the concept's percentile and label). Pillow only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from neurocarto.store.explanations import Explained, concept_map

SIDE = 224                  # each panel's side in pixels
MARGIN, CAPTION = 12, 34     # around the panels; the caption's height under each


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """(h, w) in [0, 1] → (h, w, 4) uint8: transparent where cold, through orange to opaque yellow where hot."""
    red = np.full(heat.shape, 230.0)
    green = 40 + 200 * heat
    blue = 30 * (1 - heat)
    alpha = 215 * np.clip(heat * 1.4 - 0.15, 0, 1)
    return np.stack([red, green, blue, alpha], axis=-1).astype(np.uint8)


def overlay(image: Image.Image, heat: np.ndarray) -> Image.Image:
    """The image (RGB) with the heat map (its own size) over it, normalised to its range."""
    low, high = float(heat.min()), float(heat.max())
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    layer = Image.fromarray(heat_colours(scaled), mode="RGBA")
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def explanation_figure(run, explained: Explained, image: Image.Image, nodes: list[dict], out: Path) -> Path:
    """Write the figure of `image` and these graph nodes (each with its `value`) to `out` (PNG)."""
    base = image.convert("RGB").resize((SIDE, SIDE), Image.NEAREST)
    font = ImageFont.load_default(size=13)
    panels = [(base, [f"predicted {run.class_names[explained.predicted]} {explained.top_classes[0][1]:.2f}",
                      "true " + (run.class_names[explained.true_class] if explained.true_class is not None
                                 else "unknown")])]
    for node in nodes:
        heat = concept_map(explained, run.layers, run.layer_offsets, run.layer_of, node["members"], (SIDE, SIDE))
        name = node["id"] if len(node["id"]) <= 30 else "…" + node["id"][-29:]
        panels.append((overlay(base, heat), [name, f"lit {node['value']:.0%} · {run.concept_label(node['members'])}"]))
    figure = Image.new("RGB", (MARGIN + len(panels) * (SIDE + MARGIN), SIDE + CAPTION + 2 * MARGIN), "white")
    draw = ImageDraw.Draw(figure)
    for i, (panel, lines) in enumerate(panels):
        left = MARGIN + i * (SIDE + MARGIN)
        figure.paste(panel, (left, MARGIN))
        for row, text in enumerate(lines):
            draw.text((left, MARGIN + SIDE + 4 + 15 * row), text, fill="black", font=font)
    figure.save(out, format="PNG")
    return out
