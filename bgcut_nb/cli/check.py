"""``bgcut-nb check``: check a table's images against a marketplace preset's rules.

Reads CSV or Parquet; the images are the preset's canvas column (``<preset>_path``, as
``df.bgcut.process(preset=...)`` writes) when present, else ``--image-col`` or the one column
that looks like image paths. Prints each failing row with the rules it misses and the measured
values, and writes the table plus ``<preset>_ok`` / ``_failed`` / ``_warnings`` to ``--output``.
Exit status: 0 when every row passes, 1 when any fails, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "check images against a marketplace preset (amazon-main, shopify, etsy, ebay, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bgcut_nb.dataset.presets import preset_names

    parser.add_argument("input", type=Path, help="CSV or Parquet file with a column of images")
    parser.add_argument("--preset", required=True, choices=preset_names(), help="rules to check")
    parser.add_argument("--image-col", help="column of image paths (default: see above)")
    parser.add_argument(
        "--base-dir", type=Path, help="resolve relative image paths here (default: INPUT's dir)"
    )
    parser.add_argument("--output", type=Path, help="write the checked table (.csv or .parquet)")


def run(args: argparse.Namespace) -> int:
    import bgcut_nb  # noqa: F401 - registers df.bgcut
    from bgcut_nb.batch.columns import ImageColumnError
    from bgcut_nb.dataset.exports import write_table

    from .process import IMAGE_COL, _read_table

    try:
        frame = _read_table(args.input)
    except (OSError, ValueError) as exc:
        print(f"bgcut-nb check: cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    base_dir = args.base_dir or args.input.resolve().parent
    try:
        checked = frame.bgcut.check(args.preset, col=args.image_col, base_dir=base_dir)
    except ImageColumnError as exc:
        print(f"bgcut-nb check: {args.input}: {exc.explain(*IMAGE_COL)}", file=sys.stderr)
        return 2
    ok, failed = checked[f"{args.preset}_ok"], checked[f"{args.preset}_failed"]
    for label in checked.index[~ok.astype(bool)]:
        print(f"row {label!r}: {failed[label]}")
    if args.output is not None:
        write_table(checked, args.output)
    print(f"{int(ok.sum())} of {len(checked)} rows pass {args.preset}", file=sys.stderr)
    return 0 if bool(ok.all()) else 1
