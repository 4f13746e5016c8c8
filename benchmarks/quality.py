"""Matte quality per tier on the SOD/BSDS dev set (``../shared/bench/sod-dev``), in two folds.

Each tier stands on one plain model pass (u2netp or u2net at 320x320, bilinear upsampling:
what rembg returns); the benchmark compares every photo's matte with that plain pass, so a
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

    python benchmarks/quality.py [--tiers low medium high] [--limit N] [--data DIR]
"""

from __future__ import annotations

import argparse
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


def load_pairs(data: Path, limit: int | None = None) -> list[Pair]:
    """The data set's photos sorted by id (as strings), with ground truth and fold."""
    ids = sorted(p.stem for p in (data / "images").glob("*.png"))
    if limit:
        ids = ids[:limit]
    pairs = []
    for index, ident in enumerate(ids):
        rgb = np.asarray(Image.open(data / "images" / f"{ident}.png").convert("RGB"))
        mask = np.asarray(Image.open(data / "masks" / f"{ident}.png").convert("L")) > 127
        deep_fg, deep_bg = erode_disk(mask, DEPTH), erode_disk(~mask, DEPTH)
        pairs.append(Pair(ident, "AB"[index % 2], rgb, mask, deep_fg, deep_bg))
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
    columns = [("plain u2netp", "low", "plain"), ("low", "low", "scores")]
    columns += [("plain u2net", "medium", "plain"), ("medium", "medium", "scores")]
    columns += [("high", "high", "scores")]
    columns = [c for c in columns if c[1] in by_tier]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", nargs="+", default=["low", "medium", "high"])
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args(argv)
    if not (args.data / "images").is_dir():
        print(f"benchmark data not found at {args.data}", file=sys.stderr)
        return 2

    from bgcut_nb.engine.matting import Matting
    from bgcut_nb.engine.segmenter import default_threads

    pairs = load_pairs(args.data, args.limit)
    matting = Matting(args.model_dir)
    rows = [run_tier(matting, tier, pairs) for tier in args.tiers]
    print(
        f"sod-dev: {len(pairs)} photos, {default_threads()} ONNX Runtime threads, "
        f"{os.cpu_count()} cores"
    )
    print_tables(rows, pairs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
