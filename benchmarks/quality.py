"""Quality per tier on sod-dev (binary masks) and alphamatting-lowres (soft mattes), two folds.

SOD (``--set sod``, ``../shared/bench/sod-dev``, 34 photos). Each tier stands on one plain
model pass (u2netp or u2net at 320x320, bilinear upsampling: what rembg returns); the
benchmark compares every photo's matte with that plain pass, so a
tier that is better on average but worse on some photos shows it.

Folds: the photo ids sorted as strings; even positions (0, 2, ...) are fold A, odd positions
fold B. Choices are tuned on one fold and kept only when they also help the other.

Per tier and fold: MAE of the matte against the binary mask, mean IoU of ``alpha > 0.5``,
mean max F-beta (beta^2 = 0.3, over the 256 thresholds k/255); two defects binary masks hide,
per photo then averaged: **interior transparency** (share of ground-truth foreground pixels
deeper than 10 px from its outline whose alpha is < 0.9; "see-through" is the part of it with
alpha >= 0.1, the rest is subject the pass missed) and **background residue** (share of
ground-truth background deeper than 10 px with alpha > 0.1); how many photos got worse than
the plain pass by more than 0.01 MAE and the worst case; wall and CPU seconds per image (CPU
time across all threads; every timed call starts with no remembered passes), the peak
Python-heap memory of one call on the largest photo (tracemalloc; numpy buffers count, ONNX
Runtime's arena does not) and the process's peak RSS after the tier. Then one row per photo.

Mattes (``--set mattes``, ``../shared/bench/alphamatting-lowres``: 27 alphamatting.com photos
with real soft alpha mattes, the same folds by sorted id): per tier and fold the four standard
matte measures (:func:`matte_errors`: SAD, MSE, gradient and connectivity errors, as the Deep
Image Matting evaluation code computes them) over the whole image and inside Trimap1's unknown
band, for each tier and for the plain pass it stands on.

``--model NAME`` runs every tier asked for on the registry model NAME, where it is installed
(nothing is downloaded: a missing model is an error naming the drop-in path). ``--grey MODE``
feeds every photo as greyscale: ``plain`` (the grey image as three equal channels, what the
engine does with a greyscale file), ``autocontrast`` (Pillow's ``ImageOps.autocontrast``,
1% cut-off, first) or ``equalize`` (``ImageOps.equalize`` first).

``--candidates`` scores the high-tier candidates measured for issue 23 on both sets.

    python benchmarks/quality.py [--set sod mattes] [--tiers low medium high] [--model NAME]
        [--grey plain|autocontrast|equalize] [--candidates] [--limit N] [--data DIR]
        [--mattes DIR]
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

BETA2 = 0.3
#: Interior transparency and background residue look this many pixels inside each region.
DEPTH = 10
#: The plain model pass each tier stands on.
BASE = {"low": "u2netp", "medium": "u2net", "high": "u2net"}


def find_data(name: str = "sod-dev") -> Path:
    """``shared/bench/<name>`` beside the checkout (or beside a parent folder: worktrees)."""
    here = Path(__file__).resolve().parents[1]
    for folder in here.parents:
        candidate = folder / "shared" / "bench" / name
        if candidate.is_dir():
            return candidate
    return here.parent / "shared" / "bench" / name


DEFAULT_DATA = find_data()
DEFAULT_MATTES = find_data("alphamatting-lowres")
#: How ``--grey`` turns a photo grey before it becomes three equal channels.
GREY_MODES = ("plain", "autocontrast", "equalize")


@dataclass
class Scores:
    mae: float
    iou: float
    max_f: float
    interior: float = 0.0
    see_through: float = 0.0
    residue: float = 0.0


@dataclass
class Pair:
    """One photo of the data set with its ground truth and its deep regions."""

    ident: str
    fold: str
    rgb: np.ndarray
    mask: np.ndarray
    deep_fg: np.ndarray
    deep_bg: np.ndarray


def erode_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels of ``mask`` whose whole disk of ``radius`` lies in ``mask`` (outside counts in)."""
    height, width = mask.shape
    padded = np.pad(mask, radius, constant_values=True)
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out &= padded[radius + dy : radius + dy + height, radius + dx : radius + dx + width]
    return out


def score(alpha: np.ndarray, mask: np.ndarray, pair: Pair | None = None) -> Scores:
    """Scores of one matte (float 0..1) against a boolean mask; defects need ``pair``."""
    alpha = np.clip(np.asarray(alpha, dtype=np.float64), 0.0, 1.0)
    mae = float(np.abs(alpha - mask).mean())
    pred = alpha > 0.5
    union = np.logical_or(pred, mask).sum()
    iou = float(np.logical_and(pred, mask).sum() / union) if union else 1.0
    # Precision/recall at every threshold k/255 at once, from histograms of the matte.
    levels = np.rint(alpha * 255).astype(np.int64).ravel()
    truth = mask.ravel()
    pos = np.bincount(levels[truth], minlength=256)[::-1].cumsum()[::-1]
    neg = np.bincount(levels[~truth], minlength=256)[::-1].cumsum()[::-1]
    precision = pos / np.maximum(pos + neg, 1)
    recall = pos / max(int(truth.sum()), 1)
    f = (1 + BETA2) * precision * recall / np.maximum(BETA2 * precision + recall, 1e-12)
    result = Scores(mae, iou, float(f.max()))
    if pair is not None:
        inside, outside = alpha[pair.deep_fg], alpha[pair.deep_bg]
        result.interior = float((inside < 0.9).mean()) if inside.size else 0.0
        result.see_through = (
            float(((inside >= 0.1) & (inside < 0.9)).mean()) if inside.size else 0.0
        )
        result.residue = float((outside > 0.1).mean()) if outside.size else 0.0
    return result


# --- Matte measures (alphamatting.com / Deep Image Matting evaluation code) -----------------
#
# Rhemann et al., "A Perceptually Motivated Online Benchmark for Image Matting" (CVPR 2009),
# as computed by the Deep Image Matting evaluation code (Xu et al. 2017; its Python port in
# GCA-Matting). ``pred`` and ``gt`` are float alpha in 0..1 (HxW), ``region`` a boolean HxW
# mask of the pixels counted (the whole image, or a trimap's unknown band). Our mattes are
# scored as floats (the evaluation code reads 8-bit PNGs: differences below 1/255).

#: Gradient error: the scale of the Gaussian-derivative filters (DIM's sigma).
GRADIENT_SIGMA = 1.4
#: Connectivity error: threshold step and the "fully connected" tolerance theta.
CONNECTIVITY_STEP = 0.1
CONNECTIVITY_THETA = 0.15


@functools.cache
def _dgauss_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """DIM's ``gaussgradient`` filters: G(y) * dG(x) on a (2h+1)^2 grid, h from a 1% cut-off,
    scaled to unit L2 norm; the second is the transpose (d/dy)."""
    epsilon = 1e-2
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * epsilon))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    dgauss = -u * gauss / sigma**2
    hx = np.outer(gauss, dgauss)  # rows: G, columns: dG (DIM: hx[i, j] = G(i) * dG(j))
    hx /= np.sqrt((hx**2).sum())
    return hx, hx.T.copy()


def gradient_magnitude(alpha: np.ndarray, sigma: float = GRADIENT_SIGMA) -> np.ndarray:
    """Magnitude of the Gaussian-derivative gradient (DIM, borders replicated)."""
    from scipy import ndimage

    hx, hy = _dgauss_kernels(sigma)
    gx = ndimage.convolve(alpha, hx, mode="nearest")
    gy = ndimage.convolve(alpha, hy, mode="nearest")
    return np.sqrt(gx**2 + gy**2)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` (all False when empty)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)  # default structure: 4-connectivity in 2-D
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def connectivity_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel connectivity error ``|phi(pred) - phi(gt)|``.

    For thresholds t = 0.1 .. 1.0, the source region is the largest 4-connected component of
    ``pred >= t & gt >= t``; each pixel's level ``l`` is the threshold before the first one at
    which it drops out of that region (1 if it never does). A pixel's connectivity is
    ``phi = 1 - d`` with ``d = alpha - l`` where ``d >= 0.15``, else 1.
    """
    steps = np.linspace(0.0, 1.0, round(1 / CONNECTIVITY_STEP) + 1)
    level = np.full(pred.shape, -1.0)
    for i in range(1, len(steps)):
        omega = _largest_component((pred >= steps[i]) & (gt >= steps[i]))
        level[(level == -1) & ~omega] = steps[i - 1]
    level[level == -1] = 1.0
    pred_d, gt_d = pred - level, gt - level
    pred_phi = 1 - pred_d * (pred_d >= CONNECTIVITY_THETA)
    gt_phi = 1 - gt_d * (gt_d >= CONNECTIVITY_THETA)
    return np.abs(pred_phi - gt_phi)


#: The matte measures, in table order.
MATTE_MEASURES = ("sad", "mse", "grad", "conn")


def matte_errors(
    pred: np.ndarray, gt: np.ndarray, regions: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """The four measures of ``pred`` against ``gt`` in each named region (boolean HxW).

    SAD: sum of ``|pred - gt|`` / 1000. MSE: mean of ``(pred - gt)^2`` (0 for an empty
    region; tables show it x1e3). Gradient: sum of ``(|grad pred| - |grad gt|)^2`` / 1000.
    Connectivity: sum of :func:`connectivity_map` / 1000.
    """
    pred = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
    gt = np.asarray(gt, dtype=np.float64)
    diff = pred - gt
    maps = {
        "sad": np.abs(diff),
        "mse": diff**2,
        "grad": (gradient_magnitude(pred) - gradient_magnitude(gt)) ** 2,
        "conn": connectivity_map(pred, gt),
    }
    out = {}
    for name, region in regions.items():
        count = int(region.sum())
        out[name] = {
            key: float(value[region].sum() / (max(count, 1) if key == "mse" else 1000.0))
            for key, value in maps.items()
        }
    return out


def to_grey(rgb: np.ndarray, mode: str) -> np.ndarray:
    """``rgb`` as a greyscale photo in three equal channels, contrast-normalised per ``mode``."""
    from PIL import ImageOps

    grey = Image.fromarray(rgb).convert("L")
    if mode == "autocontrast":
        grey = ImageOps.autocontrast(grey, cutoff=1)
    elif mode == "equalize":
        grey = ImageOps.equalize(grey)
    elif mode != "plain":
        raise ValueError(f"grey mode must be one of {GREY_MODES}, got {mode!r}")
    return np.asarray(grey.convert("RGB"))


def _load_rgb(path: Path, grey: str | None) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    return rgb if grey is None else to_grey(rgb, grey)


def folds(data: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """``(id, fold)`` of a data set's photos: ids sorted as strings (the first ``limit``),
    folds A and B alternating."""
    ids = sorted(p.stem for p in (data / "images").glob("*.png"))
    if limit:
        ids = ids[:limit]
    return [(ident, "AB"[index % 2]) for index, ident in enumerate(ids)]


def load_pairs(data: Path, limit: int | None = None, grey: str | None = None) -> list[Pair]:
    """The data set's photos sorted by id (as strings), with ground truth and fold
    (``grey``: a :data:`GREY_MODES` entry, the photos made grey)."""
    pairs = []
    for ident, fold in folds(data, limit):
        rgb = _load_rgb(data / "images" / f"{ident}.png", grey)
        mask = np.asarray(Image.open(data / "masks" / f"{ident}.png").convert("L")) > 127
        deep_fg, deep_bg = erode_disk(mask, DEPTH), erode_disk(~mask, DEPTH)
        pairs.append(Pair(ident, fold, rgb, mask, deep_fg, deep_bg))
    return pairs


def _rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_tier(matting, quality: str, pairs: list[Pair], *, timing: bool = True) -> dict:
    """Per-photo scores of one tier and of the plain pass it stands on, plus time and memory.

    One warm-up call first (model load, first-call costs); each timed call starts with no
    remembered passes, so it pays for every pass it needs. The plain pass is then read from the
    memo (not timed). The Python-heap peak is traced on one call for the largest photo.
    """
    if timing:
        matting.cutout(pairs[0].rgb, quality)
    tier, plain, seconds, cpu = [], [], 0.0, 0.0
    base = matting.model_for(quality)
    for pair in pairs:
        if timing:
            matting.clear_memo()
        start, start_cpu = time.perf_counter(), time.process_time()
        cut = matting.cutout(pair.rgb, quality)
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        tier.append(score(cut.alpha, pair.mask, pair))
        plain.append(score(matting.plain(pair.rgb, base), pair.mask, pair))
    row = {"tier": quality, "base": base, "scores": tier, "plain": plain}
    if timing:
        largest = max(pairs, key=lambda p: p.rgb.shape[0] * p.rgb.shape[1]).rgb
        matting.clear_memo()
        tracemalloc.start()
        matting.cutout(largest, quality)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        row.update(
            seconds=seconds / len(pairs),
            cpu_seconds=cpu / len(pairs),
            py_peak_mib=peak / 2**20,
            rss_mib=_rss_mib(),
        )
    return row


def summary(row: dict, pairs: list[Pair], fold: str | None = None) -> dict:
    """Mean scores of a ``run_tier`` row over one fold (``None``: all photos)."""
    picked = [i for i, p in enumerate(pairs) if fold is None or p.fold == fold]
    mine = [row["scores"][i] for i in picked]
    delta = [(row["scores"][i].mae - row["plain"][i].mae, pairs[i].ident) for i in picked]
    worst = max(delta)

    def mean(attr: str) -> float:
        return float(np.mean([getattr(s, attr) for s in mine]))

    return {
        "mae": mean("mae"),
        "iou": mean("iou"),
        "max_f": mean("max_f"),
        "interior": mean("interior"),
        "see_through": mean("see_through"),
        "residue": mean("residue"),
        "worse": sum(d > 0.01 for d, _ in delta),
        "worst": worst,
    }


def print_tables(rows: list[dict], pairs: list[Pair]) -> None:
    """The per-fold tier tables and the per-photo comparison, as markdown."""
    for fold, label in (
        ("A", "fold A (even positions)"),
        ("B", "fold B (odd positions)"),
        (None, "all"),
    ):
        count = sum(1 for p in pairs if fold is None or p.fold == fold)
        print(f"\n{label}: {count} photos\n")
        print(
            "| tier (stands on) | MAE | IoU@0.5 | max F | interior transp. (see-through) "
            "| bg residue | worse than plain by > 0.01 MAE | worst ΔMAE (photo) "
            "| s / image | CPU s / image | Python peak MiB | RSS MiB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            s = summary(row, pairs, fold)
            timing = (
                f"{row['seconds']:.2f} | {row['cpu_seconds']:.2f} | {row['py_peak_mib']:.0f} "
                f"| {row['rss_mib']:.0f}"
                if "seconds" in row
                else "- | - | - | -"
            )
            print(
                f"| {row['tier']} ({row['base']}) | {s['mae']:.4f} | {s['iou']:.4f} "
                f"| {s['max_f']:.4f} | {100 * s['interior']:.1f}% ({100 * s['see_through']:.1f}%) "
                f"| {100 * s['residue']:.1f}% | {s['worse']} | {s['worst'][0]:+.4f} "
                f"({s['worst'][1]}) | {timing} |"
            )
        plain = {row["base"]: row for row in rows}
        for base, row in plain.items():
            p = summary({"scores": row["plain"], "plain": row["plain"]}, pairs, fold)
            print(
                f"| plain {base} 320x320 | {p['mae']:.4f} | {p['iou']:.4f} | {p['max_f']:.4f} "
                f"| {100 * p['interior']:.1f}% ({100 * p['see_through']:.1f}%) "
                f"| {100 * p['residue']:.1f}% | - | - | - | - | - | - |"
            )
    by_tier = {row["tier"]: row for row in rows}
    print("\nper photo, MAE (plain = the model pass at 320x320, bilinear):\n")
    columns = [("plain", "low", "plain"), ("low", "low", "scores")]
    columns += [("plain", "medium", "plain"), ("medium", "medium", "scores")]
    columns += [("high", "high", "scores")]
    columns = [
        (f"plain {by_tier[t]['base']}" if label == "plain" else label, t, kind)
        for label, t, kind in columns
        if t in by_tier
    ]
    extra = "high" in by_tier and "medium" in by_tier
    print(
        "| photo | fold | "
        + " | ".join(c[0] for c in columns)
        + (" | high - medium |" if extra else " |")
    )
    print("|---" * (2 + len(columns) + extra) + "|")
    for i, pair in enumerate(pairs):
        cells = [f"{by_tier[t][kind][i].mae:.4f}" for _, t, kind in columns]
        if extra:
            cells.append(
                f"{by_tier['high']['scores'][i].mae - by_tier['medium']['scores'][i].mae:+.4f}"
            )
        print(f"| {pair.ident} | {pair.fold} | " + " | ".join(cells) + " |")


@dataclass
class Matte:
    """One photo of the matting set: its true alpha (float 0..1) and regions scored."""

    ident: str
    fold: str
    rgb: np.ndarray
    alpha: np.ndarray
    regions: dict[str, np.ndarray]


def load_mattes(data: Path, limit: int | None = None, grey: str | None = None) -> list[Matte]:
    """alphamatting-lowres sorted by id, folds alternating; regions: the whole image and
    Trimap1's unknown band (value 128)."""
    out = []
    for ident, fold in folds(data, limit):
        rgb = _load_rgb(data / "images" / f"{ident}.png", grey)
        alpha = np.asarray(Image.open(data / "alphas" / f"{ident}.png").convert("L")) / 255.0
        trimap = np.asarray(Image.open(data / "trimaps" / "Trimap1" / f"{ident}.png").convert("L"))
        regions = {"image": np.ones(alpha.shape, bool), "trimap1": trimap == 128}
        out.append(Matte(ident, fold, rgb, alpha, regions))
    return out


def run_matte_tier(matting, quality: str, mattes: list[Matte]) -> dict:
    """Per-photo matte measures of one tier and of the plain pass it stands on."""
    base = matting.model_for(quality)
    tier, plain = [], []
    for m in mattes:
        tier.append(matte_errors(matting.cutout(m.rgb, quality).alpha, m.alpha, m.regions))
        plain.append(matte_errors(matting.plain(m.rgb, base), m.alpha, m.regions))
    return {"tier": quality, "base": base, "scores": tier, "plain": plain}


def matte_summary(scores: list[dict], mattes: list[Matte], fold: str | None = None) -> dict:
    """Mean of each measure per region over one fold (``None``: all photos)."""
    picked = [s for s, m in zip(scores, mattes, strict=True) if fold is None or m.fold == fold]
    return {
        region: {key: float(np.mean([s[region][key] for s in picked])) for key in MATTE_MEASURES}
        for region in picked[0]
    }


def _matte_cells(summary: dict) -> str:
    cells = []
    for region in ("image", "trimap1"):
        x = summary[region]
        cells += [
            f"{x['sad']:.2f}",
            f"{1e3 * x['mse']:.2f}",
            f"{x['grad']:.2f}",
            f"{x['conn']:.2f}",
        ]
    return " | ".join(cells)


def print_matte_tables(rows: list[dict], mattes: list[Matte]) -> None:
    """Per fold: each tier's and each plain pass's mean matte measures, as markdown."""
    for fold, label in (("A", "fold A (even positions)"), ("B", "fold B (odd positions)")) + (
        (None, "all"),
    ):
        count = sum(1 for m in mattes if fold is None or m.fold == fold)
        print(f"\nmattes, {label}: {count} photos\n")
        print(
            "| tier (stands on) | SAD | MSE x1e3 | grad | conn "
            "| SAD trimap1 | MSE x1e3 trimap1 | grad trimap1 | conn trimap1 |"
        )
        print("|---" * 9 + "|")
        for row in rows:
            cells = _matte_cells(matte_summary(row["scores"], mattes, fold))
            print(f"| {row['tier']} ({row['base']}) | {cells} |")
        for base, row in {row["base"]: row for row in rows}.items():
            cells = _matte_cells(matte_summary(row["plain"], mattes, fold))
            print(f"| plain {base} | {cells} |")
    by_tier = {row["tier"]: row for row in rows}
    print("\nper photo, SAD over the whole image:\n")
    print("| photo | fold | " + " | ".join(f"{r['tier']} ({r['base']})" for r in rows) + " |")
    print("|---" * (2 + len(rows)) + "|")
    for i, m in enumerate(mattes):
        cells = " | ".join(f"{by_tier[r['tier']]['scores'][i]['image']['sad']:.2f}" for r in rows)
        print(f"| {m.ident} | {m.fold} | {cells} |")


def colour_model_alpha(
    rgb: np.ndarray, plain: np.ndarray, band: int, strength: float = 1.0, tau: float = 0.05
) -> np.ndarray:
    """A candidate for high, measured and not taken: in ``refine_band``'s band, move alpha
    towards a local colour model's estimate (the photo projected onto the line between the
    mean colours of the confident foreground, alpha > 0.9, and background, alpha < 0.1, in
    windows of 3x the band), weighted by the band's taper and the two colours' contrast;
    no pixel crosses 0.5."""
    from bgcut_nb.engine.refine import box_mean

    image = rgb.astype(np.float32) / 255.0
    mask = plain > 0.5
    weight = 1.0 - np.abs(2.0 * box_mean(mask, band) - 1.0)
    window = 3 * band
    fg, bg = (plain > 0.9).astype(np.float32), (plain < 0.1).astype(np.float32)
    fg_share, bg_share = box_mean(fg, window), box_mean(bg, window)
    fg_mean = box_mean(image * fg[..., None], window) / (fg_share[..., None] + 1e-6)
    bg_mean = box_mean(image * bg[..., None], window) / (bg_share[..., None] + 1e-6)
    d = fg_mean - bg_mean
    contrast = (d * d).sum(-1)
    estimate = np.clip(((image - bg_mean) * d).sum(-1) / (contrast + 1e-4), 0.0, 1.0)
    confidence = contrast / (contrast + tau) * (fg_share > 0.02) * (bg_share > 0.02)
    out = plain + strength * weight * confidence * (estimate - plain)
    return np.where(mask, np.maximum(out, 0.5001), np.minimum(out, 0.5)).astype(np.float32)


def candidates() -> dict:
    """High-tier candidates on medium's plain pass: ``(rgb, plain) -> alpha`` by name."""
    from bgcut_nb.engine.matting import BAND_PER_320
    from bgcut_nb.engine.refine import refine_band

    def radius(plain: np.ndarray, per_320: float = BAND_PER_320) -> int:
        return max(2, round(per_320 * min(plain.shape) / 320))

    def steeper(per_320: float, steepness: float):
        return lambda rgb, plain: refine_band(plain, radius(plain, per_320), steepness)

    out = {"plain (medium)": lambda rgb, plain: plain}
    for per_320, steepness in ((4, 2.0), (4, 1.5), (4, 3.0), (2, 2.0), (8, 2.0), (4, 0.75)):
        out[f"band {per_320}/320 px, steepness {steepness}"] = steeper(per_320, steepness)
    for per_320 in (2, 4):
        out[f"colour model, band {per_320}/320 px"] = lambda rgb, plain, p=per_320: (
            colour_model_alpha(rgb, plain, radius(plain, p))
        )
        for steepness in (1.25, 1.5, 2.0):
            out[f"colour model, band {per_320}/320 px, then steepness {steepness}"] = (
                lambda rgb, plain, p=per_320, k=steepness: refine_band(
                    colour_model_alpha(rgb, plain, radius(plain, p)), radius(plain), k
                )
            )
    return out


def print_candidates(matting, pairs: list[Pair], mattes: list[Matte]) -> None:
    """Each candidate's SOD and matte means per fold, all on u2net's plain pass."""
    print("\nhigh-tier candidates on u2net's plain pass (fold A / fold B):\n")
    print(
        "| candidate | SOD MAE | SOD IoU | SOD max F | matte SAD | matte grad "
        "| SAD trimap1 | grad trimap1 | s / photo |"
    )
    print("|---" * 9 + "|")
    for name, fn in candidates().items():
        sod, mat, seconds = {"A": [], "B": []}, {"A": [], "B": []}, 0.0
        for item in [*pairs, *mattes]:
            plain = matting.plain(item.rgb, "u2net")
            start = time.perf_counter()
            alpha = fn(item.rgb, plain)
            seconds += time.perf_counter() - start
            if isinstance(item, Pair):
                sod[item.fold].append(score(alpha, item.mask))
            else:
                mat[item.fold].append(matte_errors(alpha, item.alpha, item.regions))

        cells = []
        for kind, key, form in (
            ("sod", "mae", ".4f"),
            ("sod", "iou", ".4f"),
            ("sod", "max_f", ".4f"),
            ("image", "sad", ".2f"),
            ("image", "grad", ".2f"),
            ("trimap1", "sad", ".2f"),
            ("trimap1", "grad", ".2f"),
        ):
            means = [
                np.mean([getattr(x, key) for x in sod[f]])
                if kind == "sod"
                else np.mean([x[kind][key] for x in mat[f]])
                for f in "AB"
            ]
            cells.append(" / ".join(format(float(m), form) for m in means))
        per_photo = seconds / (len(pairs) + len(mattes))
        print(f"| {name} | {' | '.join(cells)} | {per_photo:.2f} |", flush=True)


def check_installed(name: str, model_dir: str | None) -> str | None:
    """``None`` when registry model ``name`` is installed (verified, or accepted unverified),
    else why not, naming where to drop a copy. Nothing is downloaded."""
    from bgcut_nb.contract.errors import ModelUnavailableError
    from bgcut_nb.engine.models import ensure_model, model_file

    try:
        ensure_model(name, model_dir=model_dir, sources=())
    except ModelUnavailableError as exc:
        try:
            where = model_file(name, model_dir)
        except ModelUnavailableError:
            return str(exc)  # an unknown name: the error lists the known ones
        return (
            f"model {name!r} is not installed, so it cannot be scored here (this benchmark "
            f"never downloads). Run `bgcut-nb models pull {name}`, or drop a copy at {where}.\n"
            f"{exc}"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="+", choices=["sod", "mattes"], default=["sod", "mattes"])
    parser.add_argument("--tiers", nargs="+", default=["low", "medium", "high"])
    parser.add_argument("--model", default=None, help="run every tier on this registry model")
    parser.add_argument("--grey", choices=GREY_MODES, default=None, help="greyscale photos")
    parser.add_argument(
        "--candidates", action="store_true", help="score high-tier candidates (both sets)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mattes", type=Path, default=DEFAULT_MATTES)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args(argv)
    if args.model is not None:
        problem = check_installed(args.model, args.model_dir)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 3
    for name, folder in (("sod", args.data), ("mattes", args.mattes)):
        if name in args.set and not (folder / "images").is_dir():
            print(f"benchmark data not found at {folder}", file=sys.stderr)
            return 2

    from bgcut_nb.engine.matting import Matting
    from bgcut_nb.engine.segmenter import default_threads

    if args.candidates:
        pairs = load_pairs(args.data, args.limit, args.grey)
        mattes = load_mattes(args.mattes, args.limit, args.grey)
        matting = Matting(args.model_dir, memo=len(pairs) + len(mattes))  # one pass per photo
        print_candidates(matting, pairs, mattes)
        return 0
    models = {tier: args.model for tier in args.tiers} if args.model else None
    matting = Matting(args.model_dir, models=models)
    grey = f", greyscale ({args.grey})" if args.grey else ""
    if "sod" in args.set:
        pairs = load_pairs(args.data, args.limit, args.grey)
        rows = [run_tier(matting, tier, pairs) for tier in args.tiers]
        print(
            f"sod-dev: {len(pairs)} photos{grey}, {default_threads()} ONNX Runtime threads, "
            f"{os.cpu_count()} cores"
        )
        print_tables(rows, pairs)
    if "mattes" in args.set:
        mattes = load_mattes(args.mattes, args.limit, args.grey)
        rows = [run_matte_tier(matting, tier, mattes) for tier in args.tiers]
        print(f"\nalphamatting-lowres: {len(mattes)} photos{grey}")
        print_matte_tables(rows, mattes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
