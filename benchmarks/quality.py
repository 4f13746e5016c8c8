"""Matte quality per tier on the SOD/BSDS dev set (``../shared/bench/sod-dev``).

For each tier: MAE of the matte against the binary mask, mean IoU of ``alpha > 0.5``, mean
max F-beta (beta^2 = 0.3, over the 256 thresholds k/255), wall and CPU seconds per image (CPU
time across all threads: on a busy machine the wall time grows, the CPU time much less), peak
Python-heap memory of one call on the largest photo (tracemalloc; numpy buffers count, ONNX
Runtime's arena does not) and the process's peak RSS after the tier.
Prints a markdown table. ``--ablation`` also scores cheaper fusions of the high tier's views
(what the high tier was chosen over), with the seconds of each view's network pass.

    python benchmarks/quality.py [--tiers high medium low] [--limit N] [--data DIR] [--ablation]
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


#: Fusions of the high tier's views scored by ``--ablation``: (label, views, how to fuse).
#: Views: u2net mirrored at 320x320 ("u2net-m"), u2net and u2netp at the aspect-preserving size
#: ("u2net-a", "u2netp-a"), u2net at a smaller aspect size (short side 288, "u2net-a288") and
#: u2netp at 320x320 ("u2netp-320"). The first row is high as long as high's subject check
#: (``SUBJECT_AGREEMENT``) does not fire, which it does on none of sod-dev's photos.
ABLATION = [
    ("high: median(u2net-m, u2net-a, u2netp-a)", ("u2net-m", "u2net-a", "u2netp-a"), "median"),
    ("mean(u2net-m, u2net-a)", ("u2net-m", "u2net-a"), "mean"),
    ("mean(u2net-m, u2net-a, u2netp-a)", ("u2net-m", "u2net-a", "u2netp-a"), "mean"),
    ("median(u2net-m, u2net-a288, u2netp-a)", ("u2net-m", "u2net-a288", "u2netp-a"), "median"),
    ("median(u2net-m, u2net-a, u2netp-320)", ("u2net-m", "u2net-a", "u2netp-320"), "median"),
    ("mean(u2net-m, u2net-a288)", ("u2net-m", "u2net-a288"), "mean"),
]


def run_ablation(matting, pairs) -> tuple[list[dict], dict[str, float]]:
    """Scores of each ``ABLATION`` fusion (feathered like the high tier) and view seconds."""
    from bgcut_nb.engine.matting import HIGH_WORK_PIXELS, _mirrored, aspect_input_size, refine_high
    from bgcut_nb.engine.refine import resize_map, resize_rgb, working_size

    big = matting.segmenter("u2net", any_size=True)
    small = matting.segmenter("u2netp", any_size=True)
    native = matting.segmenter("u2netp")
    view_seconds: dict[str, float] = {}
    scores: dict[str, list[Scores]] = {label: [] for label, _, _ in ABLATION}
    for _, rgb, mask in pairs:
        height, width = rgb.shape[:2]
        work = working_size(width, height, HIGH_WORK_PIXELS)
        photo = resize_rgb(rgb, work)
        size = aspect_input_size(*work)
        scale = 288 / min(work)
        short = tuple(max(32, round(side * scale / 32) * 32) for side in work)
        runs = {  # name: (segmenter, input size, mirrored)
            "u2net-m": (big, None, True),
            "u2net-a": (big, size, False),
            "u2netp-a": (small, size, False),
            "u2net-a288": (big, short, False),
            "u2netp-320": (native, None, False),
        }
        views = {}
        for name, (seg, input_size, mirrored) in runs.items():
            start = time.perf_counter()
            prob = _mirrored(seg, photo) if mirrored else seg.predict(photo, input_size)
            views[name] = resize_map(prob, work)
            view_seconds[name] = view_seconds.get(name, 0.0) + time.perf_counter() - start
        for label, names, how in ABLATION:
            stack = np.stack([views[n] for n in names])
            fused = np.median(stack, axis=0) if how == "median" else stack.mean(axis=0)
            scores[label].append(score(refine_high(fused, photo, rgb), mask))
    rows = [
        {
            "fusion": label,
            "mae": float(np.mean([r.mae for r in scores[label]])),
            "iou": float(np.mean([r.iou for r in scores[label]])),
            "max_f": float(np.mean([r.max_f for r in scores[label]])),
        }
        for label, _, _ in ABLATION
    ]
    return rows, {name: total / len(pairs) for name, total in view_seconds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", nargs="+", default=["low", "medium", "high"])
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument(
        "--ablation", action="store_true", help="also score cheaper fusions of high's views"
    )
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
    if args.ablation:
        fusions, view_seconds = run_ablation(matting, pairs)
        print()
        print("| high-tier fusion (then feathered) | MAE | IoU@0.5 | max F (b²=0.3) |")
        print("|---|---|---|---|")
        for r in fusions:
            print(f"| {r['fusion']} | {r['mae']:.4f} | {r['iou']:.4f} | {r['max_f']:.4f} |")
        print()
        print("seconds per view: " + ", ".join(f"{k} {v:.2f}" for k, v in view_seconds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
