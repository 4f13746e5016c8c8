"""Alpha mattes and cut-outs from a photo, at three quality tiers.

PROVISIONAL (milestone 1): every tier runs u2netp at its native 320x320 input and upsamples
the probability map bilinearly to the photo's size; the foreground is the photo itself. The
measured tier pipelines (edge-aware upsampling, u2net, matting, colour decontamination) replace
this; until then the three tiers give the same matte.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .errors import BadRequestError
from .models import ensure_model, get_spec
from .segmenter import Segmenter

__all__ = ["QUALITIES", "Cutout", "Matting", "matte"]

QUALITIES: tuple[str, ...] = ("high", "medium", "low")


@dataclass(frozen=True, eq=False)
class Cutout:
    """A cut-out: ``alpha`` float32 HxW in 0..1 and ``foreground`` uint8 HxWx3 to composite."""

    alpha: np.ndarray
    foreground: np.ndarray


def _check_quality(quality: str) -> str:
    if quality not in QUALITIES:
        raise BadRequestError(f"quality must be one of {', '.join(QUALITIES)}, got {quality!r}")
    return quality


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB HxWx3 array, got {getattr(rgb, 'shape', type(rgb))}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def upsample_bilinear(prob: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to ``size`` = (width, height), clipped to 0..1."""
    img = Image.fromarray(np.asarray(prob, dtype=np.float32), mode="F")
    out = np.asarray(img.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


class Matting:
    """Cut-outs at each quality tier; loads each ONNX model once, safe to share between threads."""

    def __init__(
        self, model_dir: str | os.PathLike[str] | None = None, *, threads: int | None = None
    ):
        self.model_dir = model_dir
        self.threads = threads
        self._segmenters: dict[str, Segmenter] = {}
        self._lock = threading.Lock()

    def segmenter(self, name: str) -> Segmenter:
        """The loaded model ``name`` (fetched into the model dir on first use)."""
        with self._lock:
            seg = self._segmenters.get(name)
            if seg is None:
                path = ensure_model(name, model_dir=self.model_dir)
                seg = Segmenter(path, get_spec(name), threads=self.threads)
                self._segmenters[name] = seg
            return seg

    def cutout(self, rgb: np.ndarray, quality: str = "high") -> Cutout:
        """The cut-out of an RGB uint8 photo at ``quality`` (high, medium or low)."""
        _check_quality(quality)
        rgb = _check_rgb(rgb)
        height, width = rgb.shape[:2]
        prob = self.segmenter("u2netp").predict(rgb)
        alpha = upsample_bilinear(prob, (width, height))
        return Cutout(alpha=alpha, foreground=rgb)


@functools.lru_cache(maxsize=4)
def _shared_matting(model_dir: str | None) -> Matting:
    return Matting(model_dir)


def _load_rgb(image: Any) -> np.ndarray:
    from .imaging import load_image

    return np.asarray(load_image(image).convert("RGB"))


def matte(
    image: Any, quality: str = "high", *, model_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """The alpha matte (float32 HxW in 0..1, the image's size after EXIF orientation).

    ``image`` is a path, bytes, a binary file, a PIL image or an array; this is the same matte
    the renderer uses for ``quality``.
    """
    _check_quality(quality)
    rgb = _load_rgb(image)
    key = None if model_dir is None else str(model_dir)
    return _shared_matting(key).cutout(rgb, quality).alpha
