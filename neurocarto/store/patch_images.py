"""Patch images as stored and served: several PNGs packed into one value, PNG encoding, mosaics.

Pillow and numpy only, so the app serves patches without importing torch.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def pack(blobs: list[bytes]) -> bytes:
    """Several byte strings as one: a count, their lengths (uint32, little-endian), then the bytes."""
    header = np.array([len(blobs)] + [len(b) for b in blobs], dtype="<u4").tobytes()
    return header + b"".join(blobs)


def unpack(packed: bytes) -> list[bytes]:
    count = int(np.frombuffer(packed[:4], dtype="<u4")[0])
    lengths = np.frombuffer(packed[4:4 + 4 * count], dtype="<u4").astype(np.int64)
    starts = 4 + 4 * count + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return [packed[start:start + length] for start, length in zip(starts, lengths)]


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes at zlib level 3 (on patches: 6× faster than Pillow's `optimize`, and 10 % smaller)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def mosaic(patch_lists: list[list[bytes]], per_member: int = 3) -> bytes:
    """One PNG: a row per member neuron, its first `per_member` patches side by side."""
    rows = [[Image.open(io.BytesIO(p)).convert("RGB") for p in patches[:per_member]] for patches in patch_lists]
    rows = [row for row in rows if row]
    if not rows:
        raise ValueError("no patches to lay out")
    cell_height, cell_width = rows[0][0].height, rows[0][0].width
    canvas = Image.new("RGB", (cell_width * per_member, cell_height * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, patch in enumerate(row):
            canvas.paste(patch.resize((cell_width, cell_height)), (x * cell_width, y * cell_height))
    return encode_png(canvas)
