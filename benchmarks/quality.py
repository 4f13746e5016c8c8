"""Matte quality per tier on the SOD/BSDS dev set (``../shared/bench/sod-dev``).

For each tier: MAE of the matte against the binary mask, mean IoU of ``alpha > 0.5``, mean
max F-beta (beta^2 = 0.3, over the 256 thresholds k/255), wall and CPU seconds per image (CPU
time across all threads: on a busy machine the wall time grows, the CPU time much less), peak
Python-heap memory of one call on the largest photo (tracemalloc; numpy buffers count, ONNX
Runtime's arena does not) and the process's peak RSS after the tier.
Prints a markdown table.

    python benchmarks/quality.py [--tiers high medium low] [--limit N] [--data DIR]
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

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "sod-dev"
BETA2 = 0.3


@dataclass
class Scores:
    mae: float
    iou: float
    max_f: float


def score(alpha: np.ndarray, mask: np.ndarray) -> Scores:
    """MAE, IoU at 0.5 and max F-beta of one matte (float 0..1) against a boolean mask."""
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
    return Scores(mae, iou, float(f.max()))


def load_pairs(data: Path, limit: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(id, RGB photo, boolean mask) for the data set's images, sorted by id."""
    ids = sorted(p.stem for p in (data / "images").glob("*.png"))
    if limit:
        ids = ids[:limit]
    pairs = []
    for ident in ids:
        rgb = np.asarray(Image.open(data / "images" / f"{ident}.png").convert("RGB"))
        mask = np.asarray(Image.open(data / "masks" / f"{ident}.png").convert("L")) > 127
        pairs.append((ident, rgb, mask))
    return pairs


def _rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_tier(matting, quality: str, pairs) -> dict:
    """Score one tier over ``pairs`` after one warm-up call (model load, first-call costs).

    Timing runs without tracing; the Python-heap peak (numpy buffers included) is then traced
    on one call for the largest photo.
    """
    matting.cutout(pairs[0][1], quality)
    results, seconds, cpu = [], 0.0, 0.0
    for _, rgb, mask in pairs:
        start, start_cpu = time.perf_counter(), time.process_time()
        cut = matting.cutout(rgb, quality)
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        results.append(score(cut.alpha, mask))
    largest = max(pairs, key=lambda p: p[1].shape[0] * p[1].shape[1])[1]
    tracemalloc.start()
    matting.cutout(largest, quality)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "tier": quality,
        "mae": float(np.mean([r.mae for r in results])),
        "iou": float(np.mean([r.iou for r in results])),
        "max_f": float(np.mean([r.max_f for r in results])),
        "seconds": seconds / len(pairs),
        "cpu_seconds": cpu / len(pairs),
        "py_peak_mib": peak / 2**20,
        "rss_mib": _rss_mib(),
    }


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

    from bgcut_nb.matting import Matting
    from bgcut_nb.segmenter import default_threads

    pairs = load_pairs(args.data, args.limit)
    matting = Matting(args.model_dir)
    rows = [run_tier(matting, tier, pairs) for tier in args.tiers]
    print(
        f"sod-dev: {len(pairs)} photos, {default_threads()} ONNX Runtime threads, "
        f"{os.cpu_count()} cores"
    )
    print()
    print(
        "| tier | MAE | IoU@0.5 | max F (b²=0.3) | s / image | CPU s / image "
        "| Python peak MiB | RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['tier']} | {r['mae']:.4f} | {r['iou']:.4f} | {r['max_f']:.4f} | "
            f"{r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['py_peak_mib']:.0f} | "
            f"{r['rss_mib']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
