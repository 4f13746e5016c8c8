"""Alpha mattes and cut-outs from a photo, at three quality tiers chosen by measurement.

``low``
    u2netp at its native 320x320 input, bilinear upsampling to the photo's size; the
    foreground is the photo itself. One network pass: the fastest tier.
``medium``
    u2netp on the photo and on its mirror image (test-time augmentation, averaged), upsampled
    with the colour guided filter guided by the full-resolution photo, so edges follow the
    photo rather than the model's 320 px grid; the foreground is the photo itself.
``high``
    Three views, fused by a per-pixel median (a majority vote that keeps confident answers
    confident): the full u2net on the mirrored photo at 320x320, u2net on the photo at an
    aspect-preserving size (short side 320), and u2netp at that same size; when the fused
    matte and the square view disagree about the subject (IoU < 0.2: a close-up where the
    aspect views pick a part, such as an eye), u2net on the photo at 320x320 (rembg's answer)
    replaces the fusion, since quality should change edges, not the subject. Then alpha matting
    in the uncertain band along the subject's outline (guided feathering: the colour guided
    filter of the binary mask, so strands of hair and fur get fractional alpha), guided
    upsampling to full resolution, and foreground colour estimation (blur fusion) so the
    original background's colour does not bleed into the edges when the cut-out is composited
    onto a new background. Falls back to u2netp (with a logged warning) when u2net cannot be
    had.

``benchmarks/quality.py`` prints each tier's scores on the SOD/BSDS dev set.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..contract.errors import BadRequestError, ModelUnavailableError
from .models import ensure_model, get_spec
from .refine import (
    box_mean,
    estimate_foreground,
    guided_filter,
    guided_upsample,
    resize_map,
    resize_rgb,
    working_size,
)
from .segmenter import Segmenter, shared_segmenter

__all__ = ["QUALITIES", "Cutout", "Matting", "matte"]

log = logging.getLogger(__name__)

QUALITIES: tuple[str, ...] = ("high", "medium", "low")

#: High tier: the matte is refined at most at this many pixels, then guided-upsampled.
HIGH_WORK_PIXELS = 1_000_000
#: High tier: below this IoU between the fused matte and the square u2net view, the views
#: disagree about the subject and u2net at 320x320 is used (1 of 56 photos: data/chelsea.png).
SUBJECT_AGREEMENT = 0.2
#: Aspect-preserving network input: the short side, and the longest long side allowed.
ASPECT_SHORT_SIDE = 320
ASPECT_MAX_LONG_SIDE = 640


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


def aspect_input_size(width: int, height: int) -> tuple[int, int]:
    """Network input (width, height): short side 320, aspect kept, multiples of 32, capped."""

    def side(value: float) -> int:
        return int(min(ASPECT_MAX_LONG_SIDE, max(32, round(value / 32) * 32)))

    scale = ASPECT_SHORT_SIDE / min(width, height)
    return side(width * scale), side(height * scale)


def _mirrored(seg: Segmenter, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    return seg.predict(np.ascontiguousarray(rgb[:, ::-1]), size)[:, ::-1]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of ``a > 0.5`` and ``b > 0.5`` (1.0 when both are empty)."""
    a, b = a > 0.5, b > 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def feather_band(alpha: np.ndarray, guide: np.ndarray, radius: int) -> np.ndarray:
    """Alpha matting in the uncertain band along the outline of ``alpha > 0.5``.

    Guided feathering: the colour guided filter of the binary mask, guided by the photo,
    replaces the matte within ``radius`` px of the outline (where a confident but coarse
    network output would otherwise keep background between strands opaque); elsewhere the
    matte is kept.
    """
    mask = (alpha > 0.5).astype(np.float64)
    if not mask.any() or mask.all():
        return alpha
    near = box_mean(mask, radius)
    band = (near > 0.0) & (near < 1.0)
    feathered = np.clip(guided_filter(guide, mask, max(1, radius // 2), 1e-4), 0.0, 1.0)
    return np.where(band, feathered, alpha).astype(np.float32)


def refine_high(fused: np.ndarray, photo: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The high tier's matte from its fused views: feathered at the working size of ``photo``,
    then guided-upsampled to the size of ``rgb`` (the full-resolution photo) when they differ.
    """
    height, width = photo.shape[:2]
    radius = max(2, round(4 * min(width, height) / 320))
    alpha = feather_band(fused, photo.astype(np.float64) / 255.0, radius)
    if rgb.shape[:2] != (height, width):
        alpha = guided_upsample(alpha, rgb, radius=2, eps=1e-4)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


class Matting:
    """Cut-outs at each quality tier; loads each ONNX model once, safe to share between threads."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        threads: int | None = None,
        providers: str | Sequence[str] | None = None,
    ):
        self.model_dir = model_dir
        self.threads = threads
        #: ONNX Runtime providers asked for (``None``: ``BGCUT_ONNX_PROVIDERS``, else the CPU).
        self.providers = providers
        self._segmenters: dict[tuple[str, bool], Segmenter] = {}
        self._lock = threading.Lock()
        self._warned_fallback = False

    def segmenter(self, name: str, *, any_size: bool = False) -> Segmenter:
        """The loaded model ``name`` (fetched into the model dir on first use)."""
        with self._lock:
            seg = self._segmenters.get((name, any_size))
            if seg is None:
                path = ensure_model(name, model_dir=self.model_dir)
                seg = shared_segmenter(
                    path,
                    get_spec(name),
                    threads=self.threads,
                    any_size=any_size,
                    providers=self.providers,
                )
                self._segmenters[name, any_size] = seg
            return seg

    def _high_model(self) -> Segmenter:
        try:
            return self.segmenter("u2net", any_size=True)
        except ModelUnavailableError as exc:
            if not self._warned_fallback:
                self._warned_fallback = True
                log.warning("high quality falls back to u2netp: u2net is unavailable: %s", exc)
            return self.segmenter("u2netp", any_size=True)

    def cutout(self, rgb: np.ndarray, quality: str = "high") -> Cutout:
        """The cut-out of an RGB uint8 photo at ``quality`` (high, medium or low)."""
        _check_quality(quality)
        rgb = _check_rgb(rgb)
        if quality == "low":
            return self._low(rgb)
        if quality == "medium":
            return self._medium(rgb)
        return self._high(rgb)

    def _low(self, rgb: np.ndarray) -> Cutout:
        height, width = rgb.shape[:2]
        prob = self.segmenter("u2netp").predict(rgb)
        alpha = np.clip(resize_map(prob, (width, height)), 0.0, 1.0)
        return Cutout(alpha=alpha, foreground=rgb)

    def _medium(self, rgb: np.ndarray) -> Cutout:
        seg = self.segmenter("u2netp")
        prob = 0.5 * (seg.predict(rgb) + _mirrored(seg, rgb))
        height, width = rgb.shape[:2]
        radius = max(1, round(2 * min(width, height) / 320))
        alpha = guided_upsample(prob, rgb, radius=radius, eps=1e-4)
        return Cutout(alpha=alpha, foreground=rgb)

    def _high(self, rgb: np.ndarray) -> Cutout:
        height, width = rgb.shape[:2]
        big, small = self._high_model(), self.segmenter("u2netp", any_size=True)
        work = working_size(width, height, HIGH_WORK_PIXELS)
        photo = resize_rgb(rgb, work)  # views, fusion and feathering run at <= 1 MP
        size = aspect_input_size(*work)
        views = [_mirrored(big, photo), big.predict(photo, size), small.predict(photo, size)]
        views = [resize_map(v, work) for v in views]
        fused = np.median(np.stack(views), axis=0)
        if mask_iou(fused, views[0]) < SUBJECT_AGREEMENT:
            # The aspect-preserving views settled on another subject than the square view
            # (a close-up: a cat's eye instead of the cat). Quality refines edges, it does not
            # pick a different subject: use u2net on the photo at 320x320, as rembg does.
            fused = resize_map(big.predict(photo), work)
        alpha = refine_high(fused, photo, rgb)
        return Cutout(alpha=alpha, foreground=estimate_foreground(rgb, alpha))


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
