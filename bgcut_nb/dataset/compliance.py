"""Measure an image against a preset's rules: background purity, fill, size, format, mode.

Works on any image (our canvases, cut-outs or a user's own photos); see :mod:`.presets` for what
each measure means.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .canvas import ALPHA_SUBJECT, WHITE_SUBJECT
from .presets import Preset, preset

__all__ = ["Report", "measure", "check_image"]


@dataclass
class Report:
    """``ok`` when every required rule passes; ``failed`` / ``warnings`` name each missed rule
    with the measured value (``"fill 0.62 < 0.85"``); ``measured`` holds every measure."""

    ok: bool
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)


def _read(source: str | os.PathLike[str] | bytes) -> tuple[Image.Image, int]:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        with open(source, "rb") as fh:
            data = fh.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image, len(data)


def measure(
    source: str | os.PathLike[str] | bytes, *, border: float = 0.01, tolerance: int = 0
) -> dict[str, Any]:
    """Every measure of one image. ``border``: the band (share of the shorter side, at least
    1 px) whose pixels must be white for ``purity``; ``tolerance``: how far below 255 a channel
    may be and still count as white. Raises ``OSError`` when the file cannot be read."""
    raw, nbytes = _read(source)
    fmt, mode = raw.format or "", raw.mode
    image = ImageOps.exif_transpose(raw)
    width, height = image.size
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    rgba = np.asarray(image.convert("RGBA"))
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    white = (rgb >= 255 - tolerance).all(axis=-1) & (alpha == 255)
    band = max(1, round(border * min(width, height)))
    ring = np.ones((height, width), bool)
    ring[band : height - band, band : width - band] = False
    subject = (alpha > ALPHA_SUBJECT) if has_alpha else (rgb < WHITE_SUBJECT).any(axis=-1)
    rows, cols = np.flatnonzero(subject.any(axis=1)), np.flatnonzero(subject.any(axis=0))
    if rows.size:
        fill = max((cols[-1] - cols[0] + 1) / width, (rows[-1] - rows[0] + 1) / height)
    else:
        fill = 0.0
    return {
        "width": width,
        "height": height,
        "longest": max(width, height),
        "shortest": min(width, height),
        "megapixels": width * height / 1e6,
        "bytes": nbytes,
        "format": fmt,
        "mode": mode,
        "purity": float(white[ring].mean()),
        "fill": float(fill),
    }


def check_image(source: str | os.PathLike[str] | bytes, spec: str | Preset) -> Report:
    """Check one image against preset ``spec``; an unreadable file fails with its cause."""
    spec = preset(spec)
    try:
        measured = measure(source, border=spec.border, tolerance=spec.white_tolerance)
    except FileNotFoundError:
        return Report(False, [f"file not found: {source}"])
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return Report(False, [f"unreadable image: {type(exc).__name__}: {exc}"])
    failed, warnings = [], []
    for rule in spec.rules:
        value = measured[rule.measure]
        if not rule.passes(value):
            (failed if rule.required else warnings).append(rule.describe(value))
    return Report(not failed, failed, warnings, measured)
