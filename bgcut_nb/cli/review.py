"""``bgcut-nb review export``: the review decisions in the reuse cache, as CSV or Parquet.

Without ``--input`` it writes every recorded decision (one row per image and variant:
``image_sha256``, ``variant``, ``decision``, ``image``, ``decided_at`` in UTC,
``variant_key``). With ``--input TABLE`` it writes that table (e.g. the results of
``bgcut-nb process``) with a ``bgcut_review`` column, matched by image content, as
``df.bgcut.reviewed(variant)`` does. ``--output -`` (the default) writes CSV to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "export review decisions (approved / rejected) from the reuse cache to CSV or Parquet"

#: Columns of the decisions table, in order.
DECISION_COLUMNS = ["image_sha256", "variant", "decision", "image", "decided_at", "variant_key"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="review_command", metavar="ACTION", required=True)
    export = sub.add_parser("export", help="write the decisions to a table")
    export.add_argument("--cache-dir", type=Path, help="reuse cache (default: BGCUT_CACHE_DIR)")
    export.add_argument("--variant", help="decisions on this variant only (with --input: its)")
    export.add_argument(
        "--output", default="-", help="file to write, .csv or .parquet (default: CSV to stdout)"
    )
    export.add_argument("--input", type=Path, help="a CSV/Parquet table to add bgcut_review to")
    export.add_argument("--image-col", help="with --input: the column of image paths")
    export.add_argument(
        "--base-dir", type=Path, help="with --input: resolve relative paths here (INPUT's dir)"
    )


def _decisions(cache, variant: str | None):
    import pandas as pd

    frame = pd.DataFrame(cache.reviews(variant), columns=DECISION_COLUMNS)
    frame["decided_at"] = pd.to_datetime(frame["decided_at"], unit="s", utc=True)
    return frame


def run(args: argparse.Namespace) -> int:
    from bgcut_nb.batch.columns import ImageColumnError
    from bgcut_nb.batch.reuse import default_cache
    from bgcut_nb.notebook.review import REVIEW_COL, reviewed

    from .process import IMAGE_COL, PARQUET_HINT, _installed, _is_parquet, _read_table
    from .process import _write_table as write_table

    output = None if args.output == "-" else Path(args.output)
    if any(p is not None and _is_parquet(p) for p in (output, args.input)) and not _installed(
        "pyarrow"
    ):
        print(f"bgcut-nb review: {PARQUET_HINT}", file=sys.stderr)
        return 2
    cache = default_cache(args.cache_dir)
    if args.input is None:
        table = _decisions(cache, args.variant)
        decisions = table["decision"].tolist()
    else:
        try:
            frame = _read_table(args.input)
        except (OSError, ValueError) as exc:
            print(f"bgcut-nb review: cannot read {args.input}: {exc}", file=sys.stderr)
            return 2
        try:
            table = reviewed(
                frame,
                args.variant,
                cache=cache,
                image_col=args.image_col,
                base_dir=args.base_dir or args.input.resolve().parent,
            )
        except ImageColumnError as exc:
            print(f"bgcut-nb review: {args.input}: {exc.explain(*IMAGE_COL)}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"bgcut-nb review: {exc} (pass --variant)", file=sys.stderr)
            return 2
        decisions = table[REVIEW_COL].tolist()
    if output is None:
        sys.stdout.write(table.to_csv(index=False))
    else:
        write_table(table, output)
    print(
        f"{len(table)} rows: {decisions.count('approved')} approved, "
        f"{decisions.count('rejected')} rejected; written to {output or 'stdout'}",
        file=sys.stderr,
    )
    return 0
