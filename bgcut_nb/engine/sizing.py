"""Pixel budgets: the one rule that fits an image into at most ``max_pixels`` pixels.

Decoding (:func:`~bgcut_nb.engine.imaging.decode_image` with ``target_pixels``) and rendering
(``max_resolution``) both size images with :func:`fit_within`, so an image decoded for a budget
is never smaller than what rendering then asks of it at that budget or below.
"""

from __future__ import annotations

import math

__all__ = ["fit_within"]


def fit_within(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Largest size with the same aspect ratio and ``w * h <= max_pixels``; never upscales.

    Each side is scaled by ``sqrt(max_pixels / (width * height))`` and rounded down; a side is
    then shortened by one pixel at a time while float error leaves the product over budget.
    """
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    new_w = max(1, math.floor(width * scale))
    new_h = max(1, math.floor(height * scale))
    while new_w * new_h > max_pixels and (new_w > 1 or new_h > 1):
        if new_w / width >= new_h / height and new_w > 1:
            new_w -= 1
        else:
            new_h -= 1
    return new_w, new_h
