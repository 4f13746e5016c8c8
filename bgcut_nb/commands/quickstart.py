"""``bgcut-nb quickstart``: the spec's three example variants for every photo in ``data/``."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "cut out the sample photos in data/ into the spec's three example variants"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=Path("data"), help="folder with images.csv (default: data)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("output") / "quickstart",
        help="where outputs go (default: output/quickstart)",
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache folder")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..backend import Backend
    from ..local import LocalBackend
    from ..variants import SPEC_EXAMPLE_VARIANTS

    table = args.data / "images.csv"
    if not table.is_file():
        raise SystemExit(f"no {table}: run this from the repository root or pass --data")
    frame = pd.read_csv(table)
    frame["path"] = [str((args.data / p).resolve()) for p in frame["path"]]
    backend: Backend = LocalBackend(
        None if args.cache_dir is None else args.cache_dir / "local-engine",
        model_dir=args.model_dir,
    )
    failures = 0
    for path in frame["path"]:
        stem = Path(path).stem
        try:
            upload = backend.upload_image(path)
            result = backend.process_image(upload.unique_filename, SPEC_EXAMPLE_VARIANTS)
        except Exception as exc:  # report and carry on with the next photo
            failures += 1
            print(f"{stem}: failed: {exc}")
            continue
        for variant in SPEC_EXAMPLE_VARIANTS:
            dest = args.out / variant.variant_name / f"{stem}.{variant.extension}"
            backend.download(result.output_urls[variant.variant_name], dest)
            print(f"{stem}: {variant.variant_name:>9} -> {dest}")
    print(f"done: {len(frame) - failures} of {len(frame)} photos, outputs in {args.out}")
    return 1 if failures else 0
