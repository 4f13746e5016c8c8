"""How well the quality signals (``bgcut_nb.engine.signals``) rank the worst cut-outs first.

On ``../shared/bench/sod-dev`` (34 photos, binary masks) and ``alphamatting-lowres`` (27
photos, soft alpha), each photo is cut out at one tier (``--tier``, default ``high``) and
measured as ``df.bgcut.process`` measures it; its error is the MAE of the matte against the
ground truth. Folds as in ``benchmarks/quality.py``: the photo ids sorted as strings, even
positions fold A, odd positions fold B, in each data set.

Thresholds are chosen on one fold of both data sets together and reported on the other fold,
per data set. The choice: coordinate descent over :data:`GRID` (values that keep each flag's
meaning) from :data:`START` (guesses made before looking at any photo), maximising the mean over
the two data sets of F-beta (beta = 0.5) of "any flag" against the fold's worst quarter by MAE,
ties broken by Spearman's rho between risk and MAE. Reported:

* **worst 10% caught**: the share of the 10% worst-MAE photos (rounded up: 2 of 17) that are
  among the 10% highest-risk ones; by chance it is about 12%. Same for 25%.
* **rho**: Spearman's rank correlation of risk and MAE.
* **flag precision / recall**: of the photos with any flag, the share among the fold's worst
  quarter by MAE; and the share of that worst quarter that has a flag.

Each run with and without the tier gap (a remote cut-out has no second model to compare).
Then the thresholds chosen on all photos (the defaults' source; in-sample figures).

    python benchmarks/flags.py [--tier high|medium|low] [--limit N]

1-2 minutes on a 2-core machine (two model passes per photo); measuring takes a few
milliseconds per photo. Last, the time to measure a downloaded 12 MP PNG on the client.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import stats

from bgcut_nb.engine.signals import (
    DEFAULT_THRESHOLDS,
    Signals,
    Thresholds,
    flags,
    measure,
    risk,
    tier_gap,
)

#: Data set -> folder of its ground truth (binary masks / soft alpha mattes).
DATASETS = {"sod-dev": "masks", "alphamatting-lowres": "alphas"}
#: Flags are tuned for F-beta with this beta^2: precision (few false alarms) counts more.
BETA2 = 0.25
#: Coordinate-descent sweeps over the six thresholds.
SWEEPS = 3
#: Where the search starts: guesses made before looking at any photo (not the defaults,
#: which came from all photos).
START = Thresholds(
    see_through=0.2, touches_edge=0.1, tiny=0.01, fills_frame=0.9, fragmented=3, tiers_disagree=0.2
)
#: The values each threshold may take: each flag keeps its meaning (a "tiny" subject is at
#: most 5% of the frame, "fills-frame" at least 60%, ...), roughly evenly spaced in log scale.
GRID: dict[str, list[float]] = {
    "see_through": [0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5],
    "touches_edge": [0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75],
    "tiny": [0.002, 0.005, 0.01, 0.02, 0.03, 0.05],
    "fills_frame": [0.6, 0.7, 0.8, 0.9, 0.95],
    "fragmented": [2, 3, 4, 6],
    "tiers_disagree": [0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3],
}


def find_bench() -> Path:
    """``shared/bench`` beside the checkout (or beside a parent folder: worktrees)."""
    here = Path(__file__).resolve().parents[1]
    for folder in here.parents:
        if (folder / "shared" / "bench").is_dir():
            return folder / "shared" / "bench"
    return here.parent / "shared" / "bench"


@dataclass
class Photo:
    """One measured photo: its data set, fold, error and signals."""

    dataset: str
    ident: str
    fold: str
    mae: float
    signals: Signals


def load_photos(bench: Path, tier: str, limit: int | None) -> tuple[list[Photo], float]:
    """Every photo of both data sets, cut out at ``tier`` and measured; and the mean seconds
    one ``measure`` + ``tier_gap`` took."""
    from bgcut_nb.engine.matting import Matting

    matting = Matting()
    photos, seconds = [], []
    for dataset, truth_dir in DATASETS.items():
        root = bench / dataset
        ids = sorted(p.stem for p in (root / "images").glob("*.png"))[:limit]
        for index, ident in enumerate(ids):
            rgb = np.asarray(Image.open(root / "images" / f"{ident}.png").convert("RGB"))
            truth = np.asarray(Image.open(root / truth_dir / f"{ident}.png").convert("L"))
            truth = truth.astype(np.float32) / 255.0
            if truth_dir == "masks":
                truth = (truth > 0.5).astype(np.float32)
            cuts = matting.cutouts(rgb, ["low", "medium", tier])
            alpha = cuts[tier].alpha
            start = time.perf_counter()
            gap = tier_gap(cuts["low"].model_pass, cuts["medium"].model_pass)
            signals = measure(alpha, gap=gap)
            seconds.append(time.perf_counter() - start)
            mae = float(np.abs(alpha - truth).mean())
            photos.append(Photo(dataset, ident, "AB"[index % 2], mae, signals))
            print(f"  {dataset} {ident}: MAE {mae:.3f}", file=sys.stderr, flush=True)
    return photos, float(np.mean(seconds))


def client_side_seconds(megapixels: float = 12.0, repeats: int = 3) -> float:
    """Seconds to measure a downloaded PNG cut-out of ``megapixels`` on the client (what a
    remote backend's row costs: decoding the file dominates), best of ``repeats``."""
    from bgcut_nb.engine.render import encode_png
    from bgcut_nb.engine.signals import measure_encoded

    side = int((megapixels * 1e6 / 12) ** 0.5)
    width, height = 4 * side, 3 * side
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    inside = ((xx - width / 2) / (0.3 * width)) ** 2 + ((yy - height / 2) / (0.4 * height)) ** 2
    alpha = (np.clip(1.0 - inside, 0.0, 0.05) * 20 * 255).astype(np.uint8)
    rgba = np.dstack([np.full_like(alpha, 180), np.full_like(alpha, 90), alpha, alpha])
    data = encode_png(Image.fromarray(rgba, "RGBA"))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        measure_encoded(data)
        best = min(best, time.perf_counter() - start)
    return best


def without_gap(photos: list[Photo]) -> list[Photo]:
    """The same photos as a remote cut-out sees them: no second model, no tier gap."""
    return [replace(p, signals=replace(p.signals, tier_gap=math.nan)) for p in photos]


def _spearman(x: list[float], y: list[float]) -> float:
    if len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def _by_dataset(photos: list[Photo]) -> dict[str, list[Photo]]:
    groups: dict[str, list[Photo]] = {}
    for photo in photos:
        groups.setdefault(photo.dataset, []).append(photo)
    return groups


def _top(scores: dict[str, float], share: float) -> set[str]:
    """The ``share`` of ids with the largest scores (rounded up)."""
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    return set(ranked[: math.ceil(share * len(ranked))])


def _maes(group: list[Photo]) -> dict[str, float]:
    return {p.ident: p.mae for p in group}


def _f_score(group: list[Photo], thresholds: Thresholds) -> float:
    """F-beta (beta = 0.5: precision counts more) of "any flag" against the group's worst
    quarter by MAE."""
    bad = _top(_maes(group), 0.25)
    flagged = {p.ident for p in group if flags(p.signals, thresholds)}
    hits = len(flagged & bad)
    if not hits:
        return 0.0
    precision, recall = hits / len(flagged), hits / len(bad)
    return (1 + BETA2) * precision * recall / (BETA2 * precision + recall)


def objective(photos: list[Photo], thresholds: Thresholds) -> tuple[float, float]:
    """Mean over the data sets of the any-flag F1, then (to break ties) of Spearman's rho
    between risk and MAE."""
    groups = _by_dataset(photos).values()
    f_score = np.mean([_f_score(group, thresholds) for group in groups])
    rho = np.mean(
        [
            _spearman([risk(p.signals, thresholds) for p in group], [p.mae for p in group])
            for group in groups
        ]
    )
    return float(f_score), float(rho)


def tune(photos: list[Photo], start: Thresholds = START) -> Thresholds:
    """Thresholds maximising :func:`objective` on ``photos`` (coordinate descent over
    :data:`GRID`)."""
    best, best_score = start, objective(photos, start)
    for _ in range(SWEEPS):
        improved = False
        for name, values in GRID.items():
            for value in values:
                trial = replace(best, **{name: value})
                score = objective(photos, trial)
                if score > best_score:
                    best, best_score, improved = trial, score, True
        if not improved:
            break
    return best


def evaluate(photos: list[Photo], thresholds: Thresholds) -> dict[str, dict[str, float]]:
    """Per data set: worst 10%/25% caught, rho, flag precision and recall, share flagged."""
    out = {}
    for dataset, group in _by_dataset(photos).items():
        risks = {p.ident: risk(p.signals, thresholds) for p in group}
        row = {"photos": len(group)}
        for share in (0.10, 0.25):
            worst = _top(_maes(group), share)
            row[f"caught{int(share * 100)}"] = len(worst & _top(risks, share)) / len(worst)
        row["rho"] = _spearman([risks[p.ident] for p in group], [p.mae for p in group])
        bad = _top(_maes(group), 0.25)
        flagged = {p.ident for p in group if flags(p.signals, thresholds)}
        row["precision"] = len(flagged & bad) / len(flagged) if flagged else math.nan
        row["recall"] = len(flagged & bad) / len(bad)
        row["flagged"] = len(flagged) / len(group)
        out[dataset] = row
    return out


def correlations(photos: list[Photo]) -> None:
    """Each measure's Spearman rho with MAE, per data set and fold (the tiny measure as
    ``-area``, so positive means "ranks bad cut-outs first" for every row)."""
    measures = {
        "see-through (soft_share)": lambda s: s.soft_share,
        "tiers-disagree (tier_gap)": lambda s: s.tier_gap,
        "tiny (-area)": lambda s: -s.area,
        "touches-edge (edge_touch)": lambda s: s.edge_touch,
        "fragmented (pieces)": lambda s: s.pieces,
    }
    groups = [
        (f"{dataset} {fold}", [p for p in group if p.fold == fold])
        for dataset, group in _by_dataset(photos).items()
        for fold in "AB"
    ]
    print("| measure | " + " | ".join(label for label, _ in groups) + " |")
    print("|---" + "|---:" * len(groups) + "|")
    for name, value in measures.items():
        cells = [
            f"{_spearman([value(p.signals) for p in group], [p.mae for p in group]):+.2f}"
            for _, group in groups
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def _row(label: str, dataset: str, r: dict[str, float]) -> str:
    precision = "-" if math.isnan(r["precision"]) else f"{100 * r['precision']:.0f}%"
    return (
        f"| {label} | {dataset} ({r['photos']}) | {100 * r['caught10']:.0f}% "
        f"| {100 * r['caught25']:.0f}% | {r['rho']:+.2f} | {precision} "
        f"| {100 * r['recall']:.0f}% | {100 * r['flagged']:.0f}% |"
    )


def _describe(t: Thresholds) -> str:
    return ", ".join(f"{f.name}={getattr(t, f.name):.3g}" for f in fields(Thresholds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", default="high", choices=["high", "medium", "low"])
    parser.add_argument("--limit", type=int, default=None, help="first N photos of each set")
    parser.add_argument("--bench", type=Path, default=find_bench())
    args = parser.parse_args(argv)
    if not all((args.bench / name / "images").is_dir() for name in DATASETS):
        print(f"benchmark data not found under {args.bench}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    photos, per_measure = load_photos(args.bench, args.tier, args.limit)
    print(
        f"tier {args.tier}: {len(photos)} photos; measuring took {1000 * per_measure:.1f} ms "
        f"per photo (signals + tier gap)\n"
    )
    print("rank correlation of each measure with MAE (Spearman's rho, per data set and fold):\n")
    correlations(photos)
    header = (
        "| thresholds from -> scored on | data set (photos) | worst 10% caught "
        "| worst 25% caught | rho | flag precision | flag recall | flagged |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|"
    )
    chosen = []
    for gap in (True, False):
        pool = photos if gap else without_gap(photos)
        print(f"\n{'with' if gap else 'without'} the tier gap\n\n{header}")
        for train, test in (("A", "B"), ("B", "A")):
            thresholds = tune([p for p in pool if p.fold == train])
            chosen.append((gap, train, thresholds))
            held_out = evaluate([p for p in pool if p.fold == test], thresholds)
            for dataset, r in held_out.items():
                print(_row(f"fold {train} -> fold {test}", dataset, r))
        everything = tune(pool)
        chosen.append((gap, "all", everything))
        for dataset, r in evaluate(pool, everything).items():
            print(_row("all -> all (in-sample)", dataset, r))
        for dataset, r in evaluate(pool, DEFAULT_THRESHOLDS).items():
            print(_row("defaults -> all", dataset, r))
    print("\nthresholds chosen:")
    for gap, train, thresholds in chosen:
        print(f"  {'with' if gap else 'without'} gap, on {train}: {_describe(thresholds)}")
    print(f"  defaults: {_describe(DEFAULT_THRESHOLDS)}")
    print(
        f"\nmeasuring a downloaded 12 MP PNG on the client (remote backends): "
        f"{client_side_seconds():.2f} s"
    )
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
