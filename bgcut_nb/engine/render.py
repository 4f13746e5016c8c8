"""Rendering: turn one cut-out (foreground colour + alpha matte) into any output variant.

Order of operations for a variant: autocrop to the subject, downscale to ``max_resolution``
(never up), fill the background through the alpha, encode. PNG keeps alpha; WebP keeps alpha
unless a background colour is set; JPEG has no alpha and is flattened onto ``background_color``,
or onto white when none is given (the convention of image editors and of remove.bg).
``output_compression`` is the JPEG/WebP quality (1..100) and is ignored for PNG.
"""

from __future__ import annotations

import io
import math
from typing import Protocol

import imagecodecs
import numpy as np
from PIL import Image

from ..contract.variants import Variant
from .sizing import fit_within

__all__ = [
    "render_variant",
    "subject_bbox",
    "fit_within",
    "AUTOCROP_ALPHA_THRESHOLD",
    "INVISIBLE_ALPHA",
]

#: Alpha above which a pixel counts as part of the subject for ``autocrop``. Fainter fringe is
#: imperceptible, and counting it would let stray matte noise defeat the crop.
AUTOCROP_ALPHA_THRESHOLD = 0.05

#: WebP cannot store images wider or taller than this; such outputs are scaled to fit.
WEBP_MAX_SIDE = 16383

JPEG_DEFAULT_BACKGROUND = (255, 255, 255)

#: Alpha under which every output leaves a pixel fully transparent (it rounds to 0 of 255), so
#: its foreground colour is never shown.
INVISIBLE_ALPHA = 0.5 / 255


class CutoutLike(Protocol):
    """A cut-out: ``foreground`` uint8 HxWx3 (the colour to show) and ``alpha`` float HxW."""

    @property
    def alpha(self) -> np.ndarray: ...

    @property
    def foreground(self) -> np.ndarray: ...


def subject_bbox(
    alpha: np.ndarray, threshold: float = AUTOCROP_ALPHA_THRESHOLD
) -> tuple[int, int, int, int] | None:
    """Bounding box ``(left, top, right, bottom)`` (exclusive) of ``alpha > threshold``.

    ``None`` when nothing in the matte reaches the threshold.
    """
    mask = alpha > threshold
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _parse_hex(color: str) -> tuple[int, int, int]:
    digits = color.lstrip("#")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def render_image(cutout: CutoutLike, variant: Variant) -> Image.Image:
    """The variant's pixels as a PIL image (``RGBA`` when it keeps alpha, else ``RGB``)."""
    alpha = np.asarray(cutout.alpha, dtype=np.float32)
    foreground = np.asarray(cutout.foreground, dtype=np.uint8)
    if alpha.shape != foreground.shape[:2]:
        raise ValueError(f"matte {alpha.shape} does not match image {foreground.shape[:2]}")
    if variant.autocrop:
        box = subject_bbox(alpha)
        if box is not None:
            left, top, right, bottom = box
            alpha = alpha[top:bottom, left:right]
            foreground = foreground[top:bottom, left:right]
    height, width = alpha.shape
    size = fit_within(width, height, variant.max_resolution)
    if variant.format == "webp" and max(size) > WEBP_MAX_SIDE:
        shrink = WEBP_MAX_SIDE / max(size)
        size = (max(1, math.floor(size[0] * shrink)), max(1, math.floor(size[1] * shrink)))

    alpha8 = Image.fromarray(np.rint(np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.uint8), "L")
    colour = Image.fromarray(np.ascontiguousarray(foreground), "RGB")
    if variant.has_alpha:
        # Invisible pixels carry no colour: smaller, faster PNGs, and no trace of the old
        # background in the file.
        if size != colour.size:
            # resampled premultiplied, so transparent pixels' colour cannot bleed into edges;
            # premultiplying also zeroes the colour of every invisible pixel
            colour.putalpha(alpha8)
            return colour.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")
        visible = alpha8.point(lambda value: 255 if value else 0)
        colour = Image.composite(colour, Image.new("RGB", colour.size), visible)
        colour.putalpha(alpha8)
        return colour

    if variant.background_color is not None:
        background = _parse_hex(variant.background_color)
    else:
        background = JPEG_DEFAULT_BACKGROUND
    # Pillow's blend of the 8-bit matte: within one level of a float blend, and in C
    image = Image.composite(colour, Image.new("RGB", colour.size, background), alpha8)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


#: How PNG outputs are encoded (libpng through imagecodecs; see ``encode_png``): every row
#: with the Paeth filter, then zlib at level 2 with the run-length strategy.
PNG_FILTER = imagecodecs.PNG.FILTER.PAETH
PNG_ZLIB_LEVEL = 2
PNG_ZLIB_STRATEGY = imagecodecs.PNG.STRATEGY.RLE


def encode_png(image: Image.Image) -> bytes:
    """Losslessly encode an ``RGBA``, ``RGB`` or ``L`` image as PNG with the engine's settings.

    Pillow always filters adaptively (tries all five filters on every row); one fixed Paeth
    filter with fast run-length zlib is about 2x faster than Pillow's level 3 run-length setting
    for about 0.5% more bytes on real cut-outs (``benchmarks/png.py``, ``benchmarks/engine.py``).
    """
    return imagecodecs.png_encode(  # type: ignore[return-value]  # bytes in practice
        np.asarray(image), level=PNG_ZLIB_LEVEL, strategy=PNG_ZLIB_STRATEGY, filter=PNG_FILTER
    )


def encode_image(image: Image.Image, variant: Variant) -> bytes:
    """Encode rendered pixels in the variant's format."""
    if variant.format == "png":
        return encode_png(image)
    buffer = io.BytesIO()
    if variant.format == "webp":
        image.save(buffer, "WEBP", quality=variant.output_compression, method=4)
    else:
        image.save(buffer, "JPEG", quality=variant.output_compression, optimize=True)
    return buffer.getvalue()


def render_variant(cutout: CutoutLike, variant: Variant) -> bytes:
    """Render and encode one variant of a cut-out; returns the file's bytes."""
    return encode_image(render_image(cutout, variant), variant)
