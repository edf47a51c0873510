"""An uploaded image checked before anything runs on it (Pillow only, so that a web worker checks an upload without
torch): its size in bytes and declared pixels, its format, that it decodes whole, and its mode against the run's."""
from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from neurocarto.errors import NeuroCartoError

MAX_UPLOAD_BYTES = 20 * 2 ** 20      # an upload larger than this is refused before it is decoded
MAX_PIXELS = 40_000_000              # a declared size above this is refused (a decompression bomb)
FORMATS = ("PNG", "JPEG", "WEBP")
MODES = {"1": "1-bit black and white", "L": "8-bit grey", "LA": "grey with alpha", "P": "palette colour",
         "PA": "palette colour with alpha", "RGB": "8-bit RGB", "RGBA": "RGB with alpha", "CMYK": "CMYK",
         "YCbCr": "YCbCr", "I": "32-bit integer grey", "I;16": "16-bit grey", "F": "32-bit float grey"}


def too_large(size: int) -> str | None:
    """Why an upload of `size` bytes is refused, or None."""
    if size > MAX_UPLOAD_BYTES:
        return f"the file is {size / 2 ** 20:.1f} MB; images up to {MAX_UPLOAD_BYTES // 2 ** 20} MB are taken"
    return None


def read_upload(content: bytes, mode: str | None) -> Image.Image:
    """An uploaded file as an image of the run's mode (`mode`, as the run's own images are; None: any mode), or
    NeuroCartoError saying what is wrong with it and what would be valid."""
    if too_large(len(content)):
        raise NeuroCartoError(too_large(len(content)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as probe:
                if probe.format not in FORMATS:
                    raise NeuroCartoError(f"the file is {probe.format or 'of no known format'}; PNG, JPEG or WebP "
                                          "images are taken")
                if probe.width * probe.height > MAX_PIXELS:
                    raise NeuroCartoError(f"the image declares {probe.width}×{probe.height} pixels; at most "
                                          f"{MAX_PIXELS:,} are taken")
                probe.verify()
            image = Image.open(io.BytesIO(content))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise NeuroCartoError(f"the file is not a readable PNG, JPEG or WebP image ({type(error).__name__}: "
                              f"{error})") from None
    return image if mode is None else in_mode(image, mode)


def in_mode(image: Image.Image, mode: str) -> Image.Image:
    """The image in the run's mode: a palette without transparency becomes RGB; any other mode than the run's is
    refused (converting would guess: alpha over which background, CMYK by which profile, 16 bits cut how)."""
    if image.mode == "P" and mode == "RGB" and "transparency" not in image.info:
        image = image.convert("RGB")
    if image.mode != mode:
        raise NeuroCartoError(f"this run's images are {MODES.get(mode, mode)}; this one is "
                              f"{MODES.get(image.mode, image.mode)}: save it as an {MODES.get(mode, mode)} PNG or JPEG")
    return image
