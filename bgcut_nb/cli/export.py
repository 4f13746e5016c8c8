"""``bgcut-nb export``: ML-dataset exports from a results table (``bgcut-nb process`` output).

* ``masks``: each output's mask (alpha > 127) as an 8-bit 0/255 PNG in ``--out``;
* ``coco``: a COCO annotations file (RLE segmentation, bbox, area) at ``--out``;
* ``manifest``: every output file with path, URL, size, sha256 and the ``bgcut_*`` review
  columns, at ``--out`` (.csv or .parquet).

Exit status: 0 when every row with an output was exported, 1 when some were left out, 2 on
usage errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "export masks, a COCO annotations file or a manifest from a results table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("masks", "coco", "manifest"), help="what to export")
    parser.add_argument("input", type=Path, help="results table (.csv or .parquet)")
    parser.add_argument("--out", required=True, type=Path, help="folder (masks) or file")
    parser.add_argument("--variant", help="the variant whose outputs to use (masks, coco)")
    parser.add_argument("--only", help="coco: only rows whose bgcut_review equals this")
    parser.add_argument("--image-col", help="coco: column of the original images")
    parser.add_argument(
        "--base-dir", type=Path, help="resolve relative image paths here (default: INPUT's dir)"
    )


def _outputs(frame, image_col) -> dict:
    names = [c[: -len("_path")] for c in frame.columns if str(c).endswith("_path")]
    return {
        n: (f"{n}_path", f"{n}_url" if f"{n}_url" in frame.columns else None)
        for n in names
        if f"{n}_path" != image_col
    }


def run(args: argparse.Namespace) -> int:
    import warnings

    from bgcut_nb.batch.columns import ImageColumnError, infer_image_col
    from bgcut_nb.dataset.exports import manifest_frame, write_table
    from bgcut_nb.dataset.table import ExportWarning, export_coco, mask_columns

    from .process import _read_table

    def fail(message: str) -> int:
        print(f"bgcut-nb export: {message}", file=sys.stderr)
        return 2

    try:
        frame = _read_table(args.input)
    except (OSError, ValueError) as exc:
        return fail(f"cannot read {args.input}: {exc}")
    if args.what == "manifest":
        table = manifest_frame(frame, _outputs(frame, args.image_col))
        write_table(table, args.out)
        print(f"{len(table)} files in {args.out}", file=sys.stderr)
        return 0
    if not args.variant or f"{args.variant}_path" not in frame.columns:
        names = sorted(_outputs(frame, args.image_col))
        return fail(f"pass --variant, one of {names}")
    column = f"{args.variant}_path"
    if args.what == "masks":
        paths, errors = mask_columns(frame[column], args.out)
        for label, error in zip(frame.index, errors, strict=True):
            if error:
                print(f"row {label!r}: {error}", file=sys.stderr)
        done = sum(p is not None for p in paths)
        print(f"{done} masks in {args.out}", file=sys.stderr)
        return 1 if any(errors) else 0
    if args.only is not None:
        if "bgcut_review" not in frame.columns:
            return fail("--only needs a bgcut_review column")
        frame = frame[frame["bgcut_review"] == args.only]
    try:
        image_col = args.image_col or infer_image_col(frame)
    except ImageColumnError:
        image_col = None  # images are named by their outputs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        dataset = export_coco(
            frame,
            args.out,
            column,
            image_col=image_col,
            base_dir=args.base_dir or args.input.resolve().parent,
        )
    for warning in caught:
        print(f"bgcut-nb export: {warning.message}", file=sys.stderr)
    print(
        f"{len(dataset['images'])} images, {len(dataset['annotations'])} annotations in {args.out}",
        file=sys.stderr,
    )
    return 1 if caught else 0
