"""Edge-aware refinement of a coarse matte, guided by the full-resolution photo.

* :func:`box_mean` — mean over square windows via cumulative sums (O(1) per pixel).
* :func:`guided_upsample` — the colour guided filter (He, Sun & Tang, 2013) used as joint
  upsampling: the low-resolution matte is the filter input, the full-resolution photo the
  guide, so upsampled edges snap to the photo's edges instead of the model's 320 px grid.
* :func:`estimate_foreground` — approximate fast foreground colour estimation ("blur fusion",
  Forte & Pitie, 2021): the colour of the subject in semi-transparent pixels with the
  background's contribution removed, so that compositing onto a new colour shows no halo.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = [
    "box_mean",
    "estimate_foreground",
    "guided_filter",
    "guided_upsample",
    "resize_map",
    "resize_rgb",
    "working_size",
]


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean of ``x`` (HxW or HxWxC) over (2r+1)^2 windows; windows shrink at the borders."""
    if r <= 0:
        return x.astype(np.float64, copy=True)
    h, w = x.shape[:2]
    out = _window_sum(x.astype(np.float64, copy=False), r, 0)
    out = _window_sum(out, r, 1)
    rows = np.minimum(np.arange(h) + r + 1, h) - np.maximum(np.arange(h) - r, 0)
    cols = np.minimum(np.arange(w) + r + 1, w) - np.maximum(np.arange(w) - r, 0)
    count = np.outer(rows, cols).astype(np.float64)
    return out / (count[..., None] if x.ndim == 3 else count)


def _window_sum(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    csum = np.cumsum(x, axis=axis)
    pad_shape = list(x.shape)
    pad_shape[axis] = 1
    csum = np.concatenate([np.zeros(pad_shape), csum], axis=axis)
    idx = np.arange(n)
    hi = np.minimum(idx + r + 1, n)
    lo = np.maximum(idx - r, 0)
    return np.take(csum, hi, axis=axis) - np.take(csum, lo, axis=axis)


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float HxW map to ``size`` = (width, height), as float32."""
    img = Image.fromarray(np.asarray(values, dtype=np.float32), mode="F")
    if img.size == size:
        return np.asarray(img, dtype=np.float32).copy()
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _guided_coefficients(
    guide: np.ndarray, p: np.ndarray, r: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel linear model ``q = a . I + b`` of the colour guided filter (box-averaged)."""
    mean_i = box_mean(guide, r)
    mean_p = box_mean(p, r)
    cov_ip = box_mean(guide * p[..., None], r) - mean_i * mean_p[..., None]
    # Covariance of the guide's channels (symmetric 3x3 per pixel) plus eps on the diagonal.
    var = {}
    for i in range(3):
        for j in range(i, 3):
            var[i, j] = box_mean(guide[..., i] * guide[..., j], r) - mean_i[..., i] * mean_i[..., j]
    rr, rg, rb = var[0, 0] + eps, var[0, 1], var[0, 2]
    gg, gb, bb = var[1, 1] + eps, var[1, 2], var[2, 2] + eps
    # Closed-form inverse of the symmetric 3x3 matrix (cofactors / determinant).
    inv_rr = gg * bb - gb * gb
    inv_rg = gb * rb - rg * bb
    inv_rb = rg * gb - gg * rb
    inv_gg = rr * bb - rb * rb
    inv_gb = rb * rg - rr * gb
    inv_bb = rr * gg - rg * rg
    det = rr * inv_rr + rg * inv_rg + rb * inv_rb
    c0, c1, c2 = cov_ip[..., 0], cov_ip[..., 1], cov_ip[..., 2]
    a = (
        np.stack(
            [
                inv_rr * c0 + inv_rg * c1 + inv_rb * c2,
                inv_rg * c0 + inv_gg * c1 + inv_gb * c2,
                inv_rb * c0 + inv_gb * c1 + inv_bb * c2,
            ],
            axis=-1,
        )
        / det[..., None]
    )
    b = mean_p - np.einsum("hwc,hwc->hw", a, mean_i)
    return box_mean(a, r), box_mean(b, r)


def guided_filter(guide: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Colour guided filter of ``p`` (HxW float) by ``guide`` (HxWx3 float in 0..1)."""
    a, b = _guided_coefficients(guide, p, r, eps)
    return np.einsum("hwc,hwc->hw", a, guide) + b


def guided_upsample(
    coarse: np.ndarray,
    photo: np.ndarray,
    *,
    radius: int = 2,
    eps: float = 1e-4,
    work_pixels: int = 1_000_000,
) -> np.ndarray:
    """Upsample a coarse matte to ``photo``'s size along the photo's edges (float32 0..1).

    The filter runs at a working resolution of at most ``work_pixels`` (the "fast guided
    filter"): its linear coefficients are upsampled bilinearly and applied to the full photo.
    """
    height, width = photo.shape[:2]
    work = working_size(width, height, work_pixels)
    small_photo = resize_rgb(photo, work)
    guide = small_photo.astype(np.float64) / 255.0
    a, b = _guided_coefficients(guide, resize_map(coarse, work).astype(np.float64), radius, eps)
    q = np.zeros((height, width), np.float32)
    for c in range(3):  # channel by channel in float32: bounded memory on large photos
        q += resize_map(a[..., c], (width, height)) * (photo[..., c] * np.float32(1 / 255))
    q += resize_map(b, (width, height))
    return np.clip(q, 0.0, 1.0, out=q)


def working_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` scaled down (never up) to at most ``max_pixels``, aspect kept."""
    scale = min(1.0, (max_pixels / (width * height)) ** 0.5)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 photo resized to ``size`` = (width, height) (area-aware Lanczos)."""
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    img = Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(img)


def _blur_fusion_step(
    image: np.ndarray, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, r: int
) -> tuple[np.ndarray, np.ndarray]:
    a = alpha[..., None]
    blurred_alpha = box_mean(alpha, r)[..., None]
    blurred_fg = box_mean(fg * a, r) / (blurred_alpha + 1e-5)
    blurred_bg = box_mean(bg * (1.0 - a), r) / (1.0 - blurred_alpha + 1e-5)
    fg = blurred_fg + a * (image - a * blurred_fg - (1.0 - a) * blurred_bg)
    return np.clip(fg, 0.0, 1.0), blurred_bg


def estimate_foreground(
    photo: np.ndarray, alpha: np.ndarray, *, work_pixels: int = 1_000_000
) -> np.ndarray:
    """The subject's own colour (uint8 HxWx3) along its edges, background colour removed.

    Larger photos are estimated at ``work_pixels`` and the colour correction (estimate minus
    photo) is upsampled onto the full-resolution photo, which keeps its texture.

    Blur fusion, two passes (a wide one for a smooth background estimate, a narrow one for
    detail), radii scaled with the image. A matte's outline is never exact: pixels just inside
    it that the matte calls opaque still mix in the old background, so the colour estimate
    treats them as partly transparent too (alpha eroded softly by the narrow radius). Pixels
    farther inside keep the photo's colour exactly.
    """
    height, width = photo.shape[:2]
    work = working_size(width, height, work_pixels)
    if work != (width, height):
        small = resize_rgb(photo, work)
        small_alpha = resize_map(alpha, work)
        correction = estimate_foreground(small, small_alpha).astype(np.float32) - small
        out = photo.astype(np.float32)
        for c in range(3):
            out[..., c] += resize_map(correction[..., c], (width, height))
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    image = photo.astype(np.float64) / 255.0
    a = np.clip(alpha.astype(np.float64), 0.0, 1.0)
    size = max(photo.shape[:2])
    wide, narrow = max(8, round(size * 0.06)), max(2, round(size * 0.004))
    a = np.minimum(a, box_mean(a, narrow))
    fg, bg = _blur_fusion_step(image, image, image, a, wide)
    fg, _ = _blur_fusion_step(image, fg, bg, a, narrow)
    out = np.rint(fg * 255.0).astype(np.uint8)
    opaque = a >= 1.0 - 1e-3
    out[opaque] = photo[opaque]
    return out
