"""Refinement: window means against a direct sum over every window, the edge band, colours."""

from __future__ import annotations

import numpy as np
import pytest

from bgcut_nb.engine.refine import apply_correction, box_mean, colour_correction, refine_band
from bgcut_nb.engine.render import INVISIBLE_ALPHA


def _direct_box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """The mean over each pixel's (2r+1)^2 window clipped to the array, one window at a time."""
    h, w = x.shape[:2]
    out = np.empty(x.shape, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            window = x[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1]
            out[i, j] = window.reshape(-1, *x.shape[2:]).mean(axis=0)
    return out


@pytest.mark.parametrize(
    "shape, r",
    [((17, 23), 3), ((17, 23), 8), ((5, 9), 4), ((7, 7), 3), ((12, 10, 3), 2), ((4, 30, 3), 6)],
)
def test_box_mean_equals_the_direct_window_mean(shape, r):
    rng = np.random.default_rng(sum(shape) + r)
    x = rng.random(shape)
    got = box_mean(x, r)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _direct_box_mean(x, r), rtol=0, atol=1e-12)


def test_box_mean_of_float32_stays_float32_and_close():
    x = np.random.default_rng(3).random((60, 80, 3)).astype(np.float32)
    got = box_mean(x, 9)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _direct_box_mean(x.astype(np.float64), 9), rtol=0, atol=1e-5)


@pytest.mark.parametrize("r", [1, 5, 40])
def test_box_mean_of_a_mask_is_its_exact_share(r):
    mask = np.random.default_rng(r).random((31, 45)) > 0.6
    got = box_mean(mask, r)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _direct_box_mean(mask.astype(float), r), atol=1e-6)
    assert np.all(box_mean(np.ones((9, 9), bool), r) == 1.0)


def test_box_mean_with_radius_zero_is_a_float_copy():
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    got = box_mean(x, 0)
    assert got.dtype == np.float64 and np.array_equal(got, x)
    got[0, 0] = 99
    assert x[0, 0] == 0


def test_refine_band_steepens_only_along_the_outline():
    yy, xx = np.mgrid[0:60, 0:80]
    alpha = np.clip((25.0 - np.hypot(xx - 40, yy - 30)) / 10.0 + 0.5, 0, 1).astype(np.float32)
    out = refine_band(alpha, 4, 2.0)
    assert out.dtype == np.float32
    assert np.array_equal(out > 0.5, alpha > 0.5)  # no pixel changes side
    far = box_mean(alpha > 0.5, 4)
    one_side = (far == 0) | (far == 1)
    assert np.array_equal(out[one_side], alpha[one_side])  # untouched outside the band
    edge = (alpha > 0.05) & (alpha < 0.95) & ~one_side
    assert np.all(np.abs(out[edge] - 0.5) >= np.abs(alpha[edge] - 0.5) - 1e-6)  # steeper
    assert np.abs(out[edge] - 0.5).mean() > np.abs(alpha[edge] - 0.5).mean() + 0.05


def _mixed_edge_photo(width: int = 120, height: int = 90):
    """A red disc on green whose soft edge pixels mix both colours by the matte's alpha."""
    yy, xx = np.mgrid[0:height, 0:width]
    alpha = np.clip(30.0 - np.hypot(xx - 60, yy - 45), 0, 4) / 4  # 4 px soft edge
    red, green = np.array([220.0, 30, 30]), np.array([30.0, 200, 40])
    photo = alpha[..., None] * red + (1 - alpha[..., None]) * green
    return np.rint(photo).astype(np.uint8), alpha.astype(np.float32)


def test_colour_correction_removes_the_old_background_only_where_it_shows():
    photo, alpha = _mixed_edge_photo()
    correction = colour_correction(photo, alpha)
    assert correction.dtype == np.int16 and correction.shape == photo.shape
    assert not correction[alpha < INVISIBLE_ALPHA].any()  # invisible: the photo's colour
    deep = box_mean(alpha >= 1, 8) == 1  # well inside the subject
    assert deep.any() and not correction[deep].any()
    edge = (alpha > 0.2) & (alpha < 0.8)
    fixed = apply_correction(photo, correction)
    assert fixed.dtype == np.uint8
    # semi-transparent edge pixels lose the green they borrowed from the old background
    assert fixed[edge, 1].mean() < photo[edge, 1].mean() - 40
    assert fixed[edge, 0].mean() > photo[edge, 0].mean() + 40


def test_a_large_photo_is_corrected_at_the_work_size_and_upsampled():
    photo, alpha = _mixed_edge_photo()
    correction = colour_correction(photo, alpha, work_pixels=2700)  # 60x45
    assert correction.shape == (45, 60, 3)
    fixed = apply_correction(photo, correction)
    assert fixed.shape == photo.shape and fixed.dtype == np.uint8
    edge = (alpha > 0.2) & (alpha < 0.8)
    assert fixed[edge, 1].mean() < photo[edge, 1].mean() - 20
    assert np.array_equal(apply_correction(photo, np.zeros_like(correction)), photo)
