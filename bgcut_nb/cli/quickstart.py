"""``bgcut-nb quickstart``: the spec's three example variants for every photo in ``data/``.

Runs ``df.bgcut.process`` on ``data/images.csv`` with the embedded local engine (no API key or
network needed once the model is fetched), so a second run is served from the cache.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "cut out the sample photos in data/ into the spec's three example variants (offline)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=Path("data"), help="folder with images.csv (default: data)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("output") / "quickstart",
        help="where outputs and results.csv go (default: output/quickstart)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache folder, also the local engine's storage (default: BGCUT_CACHE_DIR)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    import bgcut_nb  # noqa: F401 - registers df.bgcut

    from ..contract.variants import SPEC_EXAMPLE_VARIANTS
    from .process import _write_table, report

    table = args.data / "images.csv"
    if not table.is_file():
        raise SystemExit(f"no {table}: run this from the repository root or pass --data")
    frame = pd.read_csv(table)
    if "path" not in frame.columns:
        columns = ", ".join(map(repr, frame.columns)) or "none"
        raise SystemExit(f"{table} needs a 'path' column of image files; its columns: {columns}")
    from ..notebook.accessor import resolve_backend

    backend = resolve_backend("local", cache=args.cache_dir)
    print(backend.describe())
    result = frame.bgcut.process(
        SPEC_EXAMPLE_VARIANTS,
        image_col="path",
        base_dir=args.data,
        out_dir=args.out,
        backend=backend,
        cache=args.cache_dir,
        progress=not args.no_progress,
    )
    for _, row in result.iterrows():
        for variant in SPEC_EXAMPLE_VARIANTS:
            path = row[f"{variant.variant_name}_path"]
            if isinstance(path, str) and path:
                print(f"{row['path']}: {variant.variant_name:>9} -> {path}")
        if row["bgcut_error"]:
            print(f"{row['path']}: failed: {row['bgcut_error']}")
    output = args.out / "results.csv"
    _write_table(result, output)
    return report(result, output)
