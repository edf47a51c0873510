"""`explain --figure`: one explained image as a figure — the image as the model saw it, its prediction, and where
on it each of its most lit concepts fires (heat maps over the image, with the concept's percentile and label).
Pillow only."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from neurocarto.store.explanations import Explained, concept_map, overlay, view_image

SIDE = 224                  # each panel's side in pixels
MARGIN, CAPTION = 12, 34     # around the panels; the caption's height under each


def explanation_figure(run, explained: Explained, nodes: list[dict], out: Path) -> Path:
    """Write the figure of the image as the model saw it and these graph nodes (each with its `value`) to `out`
    (PNG)."""
    base = view_image(explained).convert("RGB").resize((SIDE, SIDE), Image.NEAREST)
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
