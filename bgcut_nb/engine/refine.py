"""Refinement of a model pass's matte along its outline, and the subject's own colours.

* :func:`box_mean` — mean over square windows via cumulative sums (O(1) per pixel).
* :func:`refine_band` — a steeper edge inside a thin band along the outline of
  ``alpha > 0.5``, tapering to the matte's own values at the band's sides; alpha elsewhere is
  untouched and no pixel changes side of 0.5, so the subject stays the pass's.
* :func:`colour_correction` — approximate fast foreground colour estimation ("blur fusion",
  Forte & Pitie, 2021): the colour of the subject in semi-transparent pixels with the
  background's contribution removed, so that compositing onto a new colour shows no halo; a
  small correction that :func:`apply_correction` adds to the photo.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .render import INVISIBLE_ALPHA
from .sizing import fit_within

__all__ = [
    "apply_correction",
    "box_mean",
    "colour_correction",
    "refine_band",
    "resize_map",
    "resize_rgb",
]


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean of ``x`` (HxW or HxWxC) over (2r+1)^2 windows; windows shrink at the borders.

    Float32 for a float32 ``x`` (summed in float32: half the memory traffic, for maps of at
    most a few megapixels) or a boolean one (counted exactly in integers: a mask's share);
    float64 otherwise.
    """
    h, w = x.shape[:2]
    dtype = np.float32 if x.dtype in (np.bool_, np.float32) else np.float64
    if r <= 0:
        return x.astype(dtype)
    if x.dtype == bool:
        x = x.astype(np.int32 if (2 * r + 1) * max(h, w) < 2**31 else np.int64)
    else:
        x = x.astype(dtype, copy=False)
    out = _window_sum(_window_sum(x, r, 0), r, 1)
    rows = np.minimum(np.arange(h) + r + 1, h) - np.maximum(np.arange(h) - r, 0)
    cols = np.minimum(np.arange(w) + r + 1, w) - np.maximum(np.arange(w) - r, 0)
    count = np.outer(rows, cols).astype(dtype)
    return np.divide(out, count[..., None] if x.ndim == 3 else count, dtype=dtype)


def _window_sum(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Sums of ``x`` over windows ``[i - r, i + r]`` along ``axis`` (clipped at the ends), from
    one cumulative sum and three slice differences (integer input stays exact)."""
    n = x.shape[axis]
    if n < 2 * r + 1:  # every window reaches past both ends: clip each one
        return _window_sum_clipped(x, r, axis)
    x = np.moveaxis(x, axis, 0)
    csum = np.empty((n + 1, *x.shape[1:]), dtype=x.dtype)
    csum[0] = 0
    np.cumsum(x, axis=0, out=csum[1:])
    out = np.empty_like(x)
    np.subtract(csum[2 * r + 1 :], csum[: n - 2 * r], out=out[r : n - r])
    out[:r] = csum[r + 1 : 2 * r + 1]
    np.subtract(csum[n], csum[n - 2 * r : n - r], out=out[n - r :])
    return np.moveaxis(out, 0, axis)


def _window_sum_clipped(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    pad_shape = list(x.shape)
    pad_shape[axis] = 1
    csum = np.concatenate([np.zeros(pad_shape, dtype=x.dtype), np.cumsum(x, axis=axis)], axis)
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


def refine_band(alpha: np.ndarray, radius: int, steepness: float) -> np.ndarray:
    """``alpha`` with its edge ``steepness`` times steeper along the outline (float32 0..1).

    The band is every pixel within ``radius`` px (square windows) of the outline of
    ``alpha > 0.5``. Its weight is 1 on the outline and falls to 0 at the band's sides (so no
    step appears where the band ends); each band pixel moves towards ``(alpha - 0.5) *
    steepness + 0.5`` by that weight. Outside the band alpha is returned unchanged, and no pixel
    crosses 0.5: the subject, its holes and its interior stay as the pass says.
    """
    alpha = np.asarray(alpha, dtype=np.float32)
    mask = alpha > 0.5
    if radius <= 0 or not mask.any() or mask.all():
        return alpha.copy()
    near = box_mean(mask, radius)
    weight = 1.0 - np.abs(2.0 * near - 1.0)  # 0 wherever the window sees only one side
    steep = np.clip((alpha - 0.5) * np.float32(steepness) + 0.5, 0.0, 1.0)
    out = alpha + weight * (steep - alpha)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


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


def colour_correction(
    photo: np.ndarray, alpha: np.ndarray, *, work_pixels: int = 1_000_000
) -> np.ndarray:
    """The foreground colour estimate minus the photo (int16 hxwx3), at ``work_pixels``.

    Larger photos are estimated at that size; :func:`apply_correction` upsamples the
    correction onto the full-resolution photo, which keeps its texture. It is zero wherever
    the photo's colour is kept: far inside the subject, and where the matte leaves the pixel
    invisible (``INVISIBLE_ALPHA``).

    Blur fusion, two passes (a wide one for a smooth background estimate, a narrow one for
    detail), radii scaled with the image. A matte's outline is never exact: pixels just inside
    it that the matte calls opaque still mix in the old background, so the colour estimate
    treats them as partly transparent too (alpha eroded softly by the narrow radius).
    """
    height, width = photo.shape[:2]
    work = fit_within(width, height, work_pixels)
    if work != (width, height):
        photo, alpha = resize_rgb(photo, work), resize_map(alpha, work)
    correction = _blur_fusion(photo, alpha).astype(np.int16) - photo
    correction[alpha < INVISIBLE_ALPHA] = 0
    return correction


def apply_correction(photo: np.ndarray, correction: np.ndarray) -> np.ndarray:
    """``photo`` (uint8 HxWx3) plus a :func:`colour_correction` (upsampled when smaller)."""
    height, width = photo.shape[:2]
    if correction.shape[:2] == (height, width):
        return np.clip(photo + correction, 0, 255).astype(np.uint8)
    # the raising and the lowering part as 8-bit images, upsampled bilinearly in C, applied in
    # place: a 6 MP photo allocates a third of what float channels would (and faults it in)
    out = photo.astype(np.int16)
    for part, apply in ((correction, np.add), (-correction, np.subtract)):
        amount = Image.fromarray(np.clip(part, 0, 255).astype(np.uint8), "RGB")
        apply(out, np.asarray(amount.resize((width, height), Image.Resampling.BILINEAR)), out=out)
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def _blur_fusion(photo: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The blur-fusion colour estimate at the photo's own size (uint8), in float32: within 3
    levels of float64 wherever the matte leaves the pixel visible (12 benchmark photos)."""
    image = photo.astype(np.float32) / np.float32(255.0)
    a = np.clip(alpha.astype(np.float32), 0.0, 1.0)
    size = max(photo.shape[:2])
    wide, narrow = max(8, round(size * 0.06)), max(2, round(size * 0.004))
    a = np.minimum(a, box_mean(a, narrow))
    fg, bg = _blur_fusion_step(image, image, image, a, wide)
    fg, _ = _blur_fusion_step(image, fg, bg, a, narrow)
    out = np.rint(fg * 255.0).astype(np.uint8)
    opaque = a >= 1.0 - 1e-3
    out[opaque] = photo[opaque]
    return out
