"""Renderer invariants on a synthetic cut-out: pixel budget, aspect, autocrop, fill, formats,
and the PNG encoder on real photos."""

import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgcut_nb import Variant
from bgcut_nb.engine.render import encode_png, fit_within, render_variant, subject_bbox


@dataclass
class Cut:
    alpha: np.ndarray
    foreground: np.ndarray


@pytest.fixture(scope="module")
def cut() -> Cut:
    """A 600x400 photo-like foreground with a soft-edged ellipse matte off-centre."""
    h, w = 400, 600
    yy, xx = np.mgrid[0:h, 0:w]
    dist = ((xx - 380) / 120.0) ** 2 + ((yy - 150) / 80.0) ** 2
    alpha = np.clip((1.15 - dist) / 0.3, 0, 1).astype(np.float32)
    rng = np.random.default_rng(0)
    fg = np.dstack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)]).astype(np.uint8)
    fg = np.clip(fg.astype(int) + rng.integers(-5, 6, fg.shape), 0, 255).astype(np.uint8)
    return Cut(alpha=alpha, foreground=fg)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("budget", [12_000_000, 240_000, 250_000, 100_000, 12_345, 7, 1])
def test_pixel_budget_and_aspect_ratio(cut, budget):
    out = decode(render_variant(cut, Variant("v", max_resolution=budget)))
    w, h = out.size
    assert w * h <= budget
    assert w <= 600 and h <= 400  # never upscaled
    if budget >= 240_000:
        assert (w, h) == (600, 400)
    if min(w, h) > 10:
        assert abs(w / h - 1.5) < 0.02


def test_fit_within_is_maximal():
    for width, height, budget in [
        (3000, 2000, 250_000),
        (1, 5000, 100),
        (4000, 3, 999),
        (7, 7, 48),
    ]:
        w, h = fit_within(width, height, budget)
        assert w * h <= budget and w <= width and h <= height
        assert (w + 1) * (h + 1) > budget or (w, h) == (width, height)


def test_autocrop_bounds_equal_the_mattes_bounds(cut):
    left, top, right, bottom = subject_bbox(cut.alpha)
    out = decode(render_variant(cut, Variant("v", autocrop=True)))
    assert out.size == (right - left, bottom - top)
    alpha = np.asarray(out)[..., 3]
    # every edge row/column of the crop touches the subject
    for edge in (alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]):
        assert edge.max() > 255 * 0.05
    thumb = decode(render_variant(cut, Variant("t", autocrop=True, max_resolution=2_000)))
    assert thumb.width * thumb.height <= 2_000
    assert abs(thumb.width / thumb.height - (right - left) / (bottom - top)) < 0.1


def test_autocrop_of_an_empty_matte_keeps_the_frame(cut):
    empty = Cut(alpha=np.zeros_like(cut.alpha), foreground=cut.foreground)
    out = decode(render_variant(empty, Variant("v", autocrop=True)))
    assert out.size == (600, 400) and np.asarray(out)[..., 3].max() == 0


def test_exact_background_colour_where_lossless(cut):
    out = np.asarray(decode(render_variant(cut, Variant("v", background_color="#FF5733"))))
    assert out.shape == (400, 600, 3)
    clear, solid = cut.alpha == 0, cut.alpha == 1
    assert (out[clear] == [255, 87, 51]).all()
    assert (out[solid] == cut.foreground[solid]).all()
    edge = (cut.alpha > 0.3) & (cut.alpha < 0.7)
    expected = cut.foreground * cut.alpha[..., None] + np.array([255, 87, 51]) * (
        1 - cut.alpha[..., None]
    )
    assert np.abs(out[edge].astype(float) - expected[edge]).max() <= 1


@pytest.mark.parametrize(
    ("fmt", "color", "mode"),
    [
        ("png", None, "RGBA"),
        ("png", "#00ff00", "RGB"),
        ("webp", None, "RGBA"),
        ("webp", "#00ff00", "RGB"),
        ("jpg", None, "RGB"),
        ("jpg", "#00ff00", "RGB"),
    ],
)
def test_alpha_present_or_absent_per_format(cut, fmt, color, mode):
    out = decode(render_variant(cut, Variant("v", format=fmt, background_color=color)))
    assert out.format == {"png": "PNG", "webp": "WEBP", "jpg": "JPEG"}[fmt]
    assert out.mode == mode
    corner = np.asarray(out.convert("RGBA"))[5, 5].astype(int)
    if mode == "RGBA":
        assert corner[3] == 0
    else:  # flattened: the colour, or white for a jpg without one
        expected = [0, 255, 0] if color else [255, 255, 255]
        assert np.abs(corner[:3] - expected).max() <= 3


def test_output_compression_drives_jpg_and_webp_but_not_png(cut):
    sizes = {}
    for fmt in ("jpg", "webp", "png"):
        low = render_variant(cut, Variant("v", format=fmt, output_compression=10))
        high = render_variant(cut, Variant("v", format=fmt, output_compression=95))
        sizes[fmt] = (len(low), len(high))
        if fmt == "png":
            assert low == high
        else:
            assert len(low) < len(high)


def test_huge_webp_sides_are_scaled_to_fit():
    wide = Cut(
        alpha=np.ones((2, 20_000), np.float32), foreground=np.zeros((2, 20_000, 3), np.uint8)
    )
    out = decode(render_variant(wide, Variant("v", format="webp")))
    assert max(out.size) <= 16383


def test_png_transparent_pixels_carry_no_colour_and_visible_ones_are_exact(cut):
    rgba = np.asarray(decode(render_variant(cut, Variant("cut", format="png"))))
    alpha8 = np.rint(cut.alpha * 255).astype(np.uint8)
    invisible, visible = alpha8 == 0, alpha8 > 0
    assert invisible.any() and (rgba[invisible][:, :3] == 0).all()
    assert (rgba[..., 3] == alpha8).all()
    assert (rgba[visible][:, :3] == cut.foreground[visible]).all()


def test_downscaled_png_shows_no_colour_of_invisible_pixels():
    """Resampled premultiplied: the colour under alpha 0 (pure red here) cannot bleed into the
    subject's edge, and pixels that end up invisible carry no colour."""
    h, w = 300, 400
    alpha = np.zeros((h, w), np.float32)
    alpha[60:240, 80:320] = 1.0
    alpha[59, 80:320] = alpha[240, 80:320] = 0.4  # a soft edge
    foreground = np.zeros((h, w, 3), np.uint8)
    foreground[..., 0] = 255  # the old background: red
    foreground[alpha > 0] = (0, 200, 0)  # the subject: green
    rgba = np.asarray(
        decode(render_variant(Cut(alpha, foreground), Variant("v", max_resolution=7_000)))
    )
    assert rgba.shape[:2] != (h, w)
    visible, invisible = rgba[..., 3] > 0, rgba[..., 3] == 0
    assert visible.any() and invisible.any()
    assert (rgba[invisible][:, :3] == 0).all()
    assert rgba[visible][:, 0].max() <= 2  # no red at the edges (rounding aside)


REAL_PHOTOS = sorted((Path(__file__).resolve().parents[1] / "data").glob("*.*g"))


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L"])
@pytest.mark.parametrize("photo", REAL_PHOTOS, ids=lambda p: p.name)
def test_png_encoding_is_lossless_and_close_to_pillows_size(photo, mode):
    """The engine's PNG (one Paeth filter, fast zlib) decodes to the very pixels, carries no
    chunk but the image's, and is at most 3% larger than Pillow's adaptive filtering at the
    setting it replaced (level 3, run-length); real photos with a soft elliptic matte."""
    image = Image.open(photo).convert("RGB")
    if mode == "RGBA":
        h, w = image.height, image.width
        yy, xx = np.mgrid[0:h, 0:w]
        dist = ((xx - w / 2) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 3)) ** 2
        alpha = np.clip((1.1 - dist) / 0.2, 0, 1) * 255
        image.putalpha(Image.fromarray(np.rint(alpha).astype(np.uint8), "L"))
    image = image.convert(mode)
    encoded = encode_png(image)
    decoded = decode(encoded)
    assert (decoded.format, decoded.mode, decoded.size) == ("PNG", mode, image.size)
    assert np.array_equal(np.asarray(decoded), np.asarray(image))
    assert decoded.info == {}  # no text, gamma, ICC or other chunks
    pillow = io.BytesIO()
    image.save(pillow, "PNG", compress_level=3, compress_type=zlib.Z_RLE)
    assert len(encoded) <= 1.03 * pillow.tell()
