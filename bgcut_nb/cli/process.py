"""``bgcut-nb process``: a CSV/Parquet of image paths in, cut-out files and a results table out.

Same columns, cache and progress as ``df.bgcut.process``. Relative image paths resolve against
the input file's directory unless ``--base-dir`` says otherwise. The API key is read from
``BGCUT_API_KEY`` only (never a command-line argument, which other users could see).
Exit status: 0 when every row succeeded, 1 when any row failed or the batch stopped early, 2 on
usage errors (found before any row is processed), 130 after Ctrl-C (the rows finished so far are
written to the results table; running the same command again resumes from the cache).
``--draft`` and ``--only approved`` are ``process(..., draft=True)`` and ``only="approved"``
(see :mod:`bgcut_nb.notebook.review`); draft results default to ``OUT-draft/results.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "process a CSV/Parquet of image paths into variants (same cache as df.bgcut.process)"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="CSV or Parquet file with a column of paths")
    parser.add_argument(
        "--variants",
        required=True,
        type=Path,
        help='JSON file: a list of output variants, or {"output_variants": [...]}',
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for the outputs")
    parser.add_argument(
        "--image-col", help="column of image paths (default: the one that looks like paths)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="results table: .csv, .parquet, .json (records) or .xlsx (needs the excel extra); "
        "default OUT/results.csv",
    )
    parser.add_argument(
        "--workers", type=_positive_int, help="parallel rows (default: 8 remote, 2 local)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="reuse cache, also the local engine's storage (default: BGCUT_CACHE_DIR)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="do not read or write the cache (the local engine works in a temporary folder)",
    )
    parser.add_argument(
        "--base-dir", type=Path, help="resolve relative image paths here (default: INPUT's dir)"
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "local", "remote"),
        default="auto",
        help="auto: the HTTP API when BGCUT_API_KEY is set, else the local engine",
    )
    parser.add_argument(
        "--errors",
        choices=("coerce", "raise"),
        default="coerce",
        help="coerce: record a bad row's error and carry on; raise: stop at the first",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--draft",
        action="store_true",
        help="review drafts: the local engine, at most 0.25 MP, into OUT-draft",
    )
    parser.add_argument(
        "--only",
        choices=("approved",),
        help="process only rows approved in review (the others are listed as skipped)",
    )


#: Results tables by suffix: (format, module it needs or ``None``, extra that installs it).
TABLE_FORMATS: dict[str, tuple[str, str | None, str]] = {
    ".csv": ("CSV", None, ""),
    ".parquet": ("Parquet", "pyarrow", "parquet"),
    ".pq": ("Parquet", "pyarrow", "parquet"),
    ".json": ("JSON", None, ""),
    ".xlsx": ("Excel", "openpyxl", "excel"),
}


def _extra_hint(what: str, extra: str) -> str:
    return (
        f"{what} needs the {extra} extra: run `.venv/bin/pip install -e '.[{extra}]'` "
        "in the bgcut-nb checkout"
    )


PARQUET_HINT = _extra_hint("Parquet", "parquet")


#: How ``ImageColumnError.explain`` names the option on the command line.
IMAGE_COL = ("--image-col", "pass --image-col COLUMN")


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _read_table(path: Path):
    import pandas as pd

    if _is_parquet(path):
        return pd.read_parquet(path)
    return pd.read_csv(path)


def _write_table(frame, path: Path) -> None:
    """``frame`` to ``path`` (atomically) in the format its suffix names (CSV otherwise)."""
    import io

    from bgcut_nb.core.atomic import atomic_write_bytes

    kind = TABLE_FORMATS.get(path.suffix.lower(), ("CSV",))[0]
    if kind == "Parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        data = buffer.getvalue()
    elif kind == "Excel":
        buffer = io.BytesIO()
        frame.to_excel(buffer, index=False, engine="openpyxl")
        data = buffer.getvalue()
    elif kind == "JSON":
        data = frame.to_json(orient="records", force_ascii=False, indent=1).encode("utf-8")
    else:
        data = frame.to_csv(index=False).encode("utf-8")
    atomic_write_bytes(path, data)


def _installed(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _table_problems(args: argparse.Namespace, output: Path) -> str | None:
    """Why the input cannot be read or the results table cannot be written, before any row
    is processed (and paid for); ``None`` when both are fine."""
    from bgcut_nb.batch.runner import check_folder

    suffix = output.suffix.lower()
    if suffix not in TABLE_FORMATS:
        known = ", ".join(TABLE_FORMATS)
        return f"--output {output}: unknown table format {suffix or '(no suffix)'}; use {known}"
    if _is_parquet(args.input) and not _installed("pyarrow"):
        return PARQUET_HINT
    kind, module, extra = TABLE_FORMATS[suffix]
    if module is not None and not _installed(module):
        return f"--output {output}: {_extra_hint(kind, extra)}"
    if output.is_dir():
        return f"--output {output} is a folder; name the results file"
    try:
        check_folder(args.out, "--out")
        check_folder(output.parent, "--output's folder")
    except ValueError as exc:
        return str(exc).removeprefix("bgcut: ")
    return None


def _read_variants(path: Path) -> list:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "output_variants" in data:
        data = data["output_variants"]
    return data


def run(args: argparse.Namespace) -> int:
    import warnings

    import bgcut_nb  # noqa: F401 - registers df.bgcut
    from bgcut_nb.batch.columns import ImageColumnError
    from bgcut_nb.batch.options import RunOptions
    from bgcut_nb.batch.runner import BatchError, BatchStoppedWarning
    from bgcut_nb.contract.errors import BgcutError
    from bgcut_nb.contract.variants import parse_variants
    from bgcut_nb.core.config import resolve_api_key
    from bgcut_nb.notebook.accessor import process_frame

    try:
        variants = parse_variants(_read_variants(args.variants))
    except (OSError, ValueError, BgcutError) as exc:
        print(f"bgcut-nb process: bad --variants file {args.variants}: {exc}", file=sys.stderr)
        return 2
    if args.draft:
        from bgcut_nb.notebook.review import draft_dir

        output = args.output or (draft_dir(args.out) / "results.csv")
    else:
        output = args.output or (args.out / "results.csv")
    problem = _table_problems(args, output)
    if problem:
        print(f"bgcut-nb process: {problem}", file=sys.stderr)
        return 2
    try:
        frame = _read_table(args.input)
    except (OSError, ValueError) as exc:
        print(f"bgcut-nb process: cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    if args.backend == "remote" and resolve_api_key() is None:
        print("bgcut-nb process: --backend remote needs BGCUT_API_KEY to be set", file=sys.stderr)
        return 2
    options = RunOptions(
        image_col=args.image_col,
        out_dir=args.out,
        backend=args.backend,
        max_workers=args.workers,
        errors=args.errors,
        progress=not args.no_progress,
        cache=False if args.no_cache else args.cache_dir,
        base_dir=args.base_dir or args.input.resolve().parent,
        draft=args.draft,
        only=args.only,
    )
    status = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BatchStoppedWarning)
        try:
            result = process_frame(frame, variants, options)
        except BatchError as exc:
            print(f"bgcut-nb process: {exc}", file=sys.stderr)
            result, status = getattr(exc, "frame", None), 1
        except KeyboardInterrupt as exc:  # Ctrl-C: keep what finished, say how to resume
            return interrupted(getattr(exc, "frame", None), output, cached=not args.no_cache)
        except ImageColumnError as exc:  # the accessor's words are Python's: use the option's
            print(f"bgcut-nb process: {args.input}: {exc.explain(*IMAGE_COL)}", file=sys.stderr)
            return 2
        except (KeyError, ValueError) as exc:
            print(f"bgcut-nb process: {exc}", file=sys.stderr)
            return 2
    for warning in caught:
        if issubclass(warning.category, BatchStoppedWarning):
            print(f"bgcut-nb process: {warning.message}", file=sys.stderr)
    if result is None:
        return 1
    _write_table(result, output)
    return max(status, report(result, output))


def interrupted(result, output: Path, *, cached: bool) -> int:
    """After Ctrl-C: write the rows so far to ``output``, say what was done and how a re-run
    resumes; the exit status of an interrupted command (130)."""
    if result is None:
        print("bgcut-nb process: interrupted before any row was processed", file=sys.stderr)
        return 130
    _write_table(result, output)
    print("bgcut-nb process: interrupted (Ctrl-C); the results so far:", file=sys.stderr)
    report(result, output)
    resume = (
        "run the same command again to resume: finished rows come from the cache at no cost"
        if cached
        else "without the cache (--no-cache) a new run processes every row again"
    )
    print(f"bgcut-nb process: {resume}", file=sys.stderr)
    return 130


def report(result, output: Path) -> int:
    """Print a run's summary line to stderr; 1 if any row failed or was not attempted."""
    from bgcut_nb.batch.runner import plural

    stats = result.bgcut.stats
    print(
        f"{plural(stats.get('rows', 0), 'row')}: {stats.get('done', 0)} done, "
        f"{stats.get('cached', 0)} cached, {stats.get('failed', 0)} failed, "
        f"{stats.get('not_attempted', 0)} not attempted"
        + (f", {stats['skipped']} skipped (not approved)" if "skipped" in stats else "")
        + f"; {stats.get('uploads', 0)} uploads, "
        f"{stats.get('process_calls', 0)} process calls; results: {output}",
        file=sys.stderr,
    )
    return 1 if stats.get("failed") or stats.get("not_attempted") else 0
