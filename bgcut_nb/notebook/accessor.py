"""``df.bgcut`` and ``s.bgcut``: background removal as a DataFrame operation.

Importing :mod:`bgcut_nb` registers both accessors::

    df = pd.read_csv("images.csv")                       # a column of image paths
    out = df.bgcut.process([{"variant_name": "cutout"}])  # adds cutout_url / cutout_path
    out.bgcut.preview()                                   # inline before/after widget

``image_col`` defaults to the one column whose values look like image paths (``.png``,
``.jpg``, ``.jpeg``, ``.webp``) or hold image bytes; with none or several such columns, pass it.
``backend=None`` picks the HTTP API when an API key is configured (``BGCUT_API_KEY``), else the
embedded local engine; ``"local"`` or ``"remote"`` force one, or pass any
:class:`~bgcut_nb.contract.backend.Backend`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..batch.columns import (
    ERROR_COL,
    META_KEY,
    SIGNAL_COLUMNS,
    UNIQUE_FILENAME_COL,
    ImageColumnError,
    check_image_col,
    frame_meta,
    infer_image_col,
    signal_values,
)
from ..batch.options import (
    DEFAULT_OUT_DIR,
    BackendLike,
    CacheLike,
    Errors,
    Only,
    RunOptions,
    local_storage_dir,
    resolve_backend,
    resolve_cache,
)
from ..batch.reuse import CacheScope, ReuseCache, sha256_bytes
from ..batch.runner import (
    BatchError,
    BatchResult,
    RowResult,
    _read_source,
    _RowError,
    run_batch,
    upload_batch,
)
from ..contract.backend import Backend
from ..contract.formats import image_dimensions, sniff_format
from ..contract.variants import Variant, parse_variants

__all__ = [
    "EstimateWarning",
    "ImageColumnError",
    "BgcutFrameAccessor",
    "BgcutSeriesAccessor",
    "local_storage_dir",
    "process_frame",
    "resolve_backend",
    "resolve_cache",
    "UNIQUE_FILENAME_COL",
    "ERROR_COL",
]

#: Rows an estimate lists by name when it warns about rows that will fail (the rest are counted).
_LISTED_ROWS = 5


class EstimateWarning(UserWarning):
    """``estimate_credits`` counted rows as free because they will fail before any charge."""


def _frame_from_result(
    frame: pd.DataFrame,
    result: BatchResult,
    *,
    image_col: Hashable,
    out_dir: Path,
    base_dir: Path | None,
    backend: Backend,
) -> pd.DataFrame:
    out = frame.copy()
    names = [v.variant_name for v in result.variants]
    rows = result.rows
    out[UNIQUE_FILENAME_COL] = [r.unique_filename or None for r in rows]
    for name in names:
        out[f"{name}_url"] = [r.urls.get(name) for r in rows]
        out[f"{name}_path"] = [r.paths.get(name) for r in rows]
    out[ERROR_COL] = [r.error for r in rows]
    variants = [v.to_dict() for v in result.variants]
    values = [signal_values(variants, r.signals) for r in rows]
    for column, dtype in SIGNAL_COLUMNS.items():
        out[column] = pd.Series([v[column] for v in values], index=out.index, dtype=dtype)
    out.attrs[META_KEY] = {
        "image_col": image_col,
        "base_dir": str(base_dir) if base_dir is not None else None,
        "out_dir": str(out_dir),
        "backend": backend.identity,
        "variants": variants,
        "stats": result.stats.to_dict(),
    }
    return out


def _image_col(frame: pd.DataFrame, image_col: Hashable | None) -> Hashable | None:
    """The column of images (:func:`infer_image_col`, or ``image_col`` checked); in a frame
    without rows an unclear column is no error (``None``: there is nothing to process)."""
    if image_col is not None:
        return check_image_col(frame, image_col)
    try:
        return infer_image_col(frame)
    except ImageColumnError:
        if frame.empty:
            return None
        raise


def _draft_backend(backend: BackendLike, cache: CacheLike) -> Backend:
    """The local engine for drafts: ``None``/``"auto"``/``"local"`` or a local ``Backend``."""
    if isinstance(backend, str) or backend is None:
        if backend in (None, "auto", "local"):
            return resolve_backend("local", cache=cache)
    elif backend.identity.startswith("local:"):
        return backend
    raise ValueError(
        "bgcut: draft=True renders on the local engine, free of charge; leave backend out "
        "(or pass 'local'), and pass the API backend to the final call"
    )


@dataclass(frozen=True)
class _Selection:
    """The rows ``only="approved"`` processes (positions in the frame) and why the rest not."""

    keep: list[int]
    items: list[tuple[Hashable, object]]
    decisions: list[str]
    skipped: list[str]


def _select(
    frame: pd.DataFrame,
    col: Hashable,
    items: list[tuple[Hashable, object]],
    variants: Any,
    only: Only,
    review_variant: str | None,
    base: Path | None,
    store: ReuseCache | None,
) -> _Selection | None:
    if only is None:
        return None
    if only != "approved":
        raise ValueError("only must be None or 'approved'")
    from .review import review_decisions, skip_reasons

    name = review_variant or parse_variants(variants)[0].variant_name
    values = [value for _, value in items]
    decisions = review_decisions(frame, values, name, base_dir=base, cache=store)
    keep = [pos for pos, decision in enumerate(decisions) if decision == "approved"]
    return _Selection(keep, [items[p] for p in keep], decisions, skip_reasons(decisions, name))


def _finish(
    frame: pd.DataFrame,
    result: BatchResult,
    selection: _Selection | None,
    draft: bool,
    kwargs: dict[str, Any],
) -> pd.DataFrame:
    """The result frame; with a selection, skipped rows in place (empty outputs, a reason)."""
    from .review import DRAFT_MAX_PIXELS, REVIEW_COL, SKIPPED_COL

    if selection is not None:
        rows = [RowResult() for _ in range(len(frame))]
        for pos, row in zip(selection.keep, result.rows, strict=True):
            rows[pos] = row
        result = replace(result, rows=rows)
    out = _frame_from_result(frame, result, **kwargs)
    meta = out.attrs[META_KEY]
    if draft:
        meta["draft"] = {"max_resolution": DRAFT_MAX_PIXELS}
    if selection is not None:
        if REVIEW_COL not in out.columns:
            out[REVIEW_COL] = selection.decisions
        out[SKIPPED_COL] = selection.skipped
        meta["only"] = "approved"
        meta["stats"]["skipped"] = len(frame) - len(selection.keep)
    return out


def _with_canvas(out: pd.DataFrame, spec: Any, out_dir: Path) -> pd.DataFrame:
    """``out`` plus ``<preset>_path``: each cut-out on the preset's canvas (a failed canvas is
    added to the row's ``bgcut_error``)."""
    from ..dataset.table import canvas_column

    paths, errors = canvas_column(out[f"{spec.variant_name}_path"].tolist(), out_dir, spec)
    out[f"{spec.name}_path"] = paths
    out[ERROR_COL] = [
        "; ".join(e for e in (old, new) if e)
        for old, new in zip(out[ERROR_COL], errors, strict=True)
    ]
    out.attrs[META_KEY]["presets"] = [spec.name]
    return out


class _Common:
    @staticmethod
    def _estimate(
        column: pd.Series,
        variants: Iterable[Variant | Mapping[str, Any]],
        options: RunOptions,
    ) -> float:
        from ..dataset.table import split_preset

        parsed = parse_variants(split_preset(variants, None)[1])  # a Preset: its cut-out
        options = options.resolve()
        engine, store, base = options.engine, options.store, options.base_dir
        scope = CacheScope.of(engine)
        total = 0.0
        free: list[str] = []
        for label, value in column.items():
            try:
                data, _, _ = _read_source(value, base)
            except _RowError as exc:
                free.append(f"row {label!r}: {exc}")
                continue  # a row that cannot be read fails before it costs anything
            if sniff_format(data) is None:  # the API refuses it with a 400, free of charge
                free.append(f"row {label!r}: not a PNG, JPEG or WebP image")
                continue
            size = image_dimensions(data)  # the header only: refused before decoding too
            if size is not None and size[0] * size[1] > engine.max_pixels:
                free.append(
                    f"row {label!r}: too large ({size[0]} x {size[1]} = "
                    f"{size[0] * size[1]:,} pixels, over the limit of {engine.max_pixels:,})"
                )
                continue
            image_sha = sha256_bytes(data)
            pending = [
                v
                for v in parsed
                if store is None
                or store.get_output(scope, image_sha, v.cache_key(), count=False) is None
            ]
            if not pending:
                continue
            total += engine.costs.process_cost(pending)
            if store is None or not store.peek_upload(scope, image_sha):
                total += engine.costs.upload
        if free:
            listed = "; ".join(free[:_LISTED_ROWS])
            more = f"; and {len(free) - _LISTED_ROWS} more" if len(free) > _LISTED_ROWS else ""
            warnings.warn(
                f"bgcut: {len(free)} {'row costs' if len(free) == 1 else 'rows cost'} nothing "
                f"because {'it' if len(free) == 1 else 'they'} will fail: {listed}{more}",
                EstimateWarning,
                stacklevel=3,
            )
        return total


def process_frame(
    frame: pd.DataFrame,
    variants: Iterable[Variant | Mapping[str, Any]] | Variant | Mapping[str, Any] | None,
    options: RunOptions,
) -> pd.DataFrame:
    """``df.bgcut.process`` with its options in one :class:`RunOptions` (the pandas accessor,
    each Dask partition and ``bgcut-nb process`` come through here)."""
    from ..dataset.table import split_preset
    from .review import draft_dir, draft_variants

    options.check()
    spec, variants = split_preset(variants, options.preset)
    col = _image_col(frame, options.image_col)
    if options.draft:
        variants = draft_variants(variants)
        options = replace(
            options,
            backend=_draft_backend(options.backend, options.cache),
            out_dir=draft_dir(options.out_dir),
        )
    options = options.resolve()
    target, base, store = options.out_dir, options.base_dir, options.store
    kwargs = dict(image_col=col, out_dir=target, base_dir=base, backend=options.engine)
    items = _items(frame[col]) if col is not None else []
    selection = _select(
        frame, col, items, variants, options.only, options.review_variant, base, store
    )
    try:
        result = run_batch(selection.items if selection else items, variants, options)
    except (BatchError, KeyboardInterrupt) as exc:  # Ctrl-C: the rows so far, too
        if getattr(exc, "result", None) is not None:
            exc.frame = _finish(frame, exc.result, selection, options.draft, kwargs)
        raise
    out = _finish(frame, result, selection, options.draft, kwargs)
    return out if spec is None else _with_canvas(out, spec, target)


def _items(column: pd.Series) -> list[tuple[Hashable, object]]:
    return list(zip(column.index, column.tolist(), strict=True))


@pd.api.extensions.register_dataframe_accessor("bgcut")
class BgcutFrameAccessor(_Common):
    """``df.bgcut``: process a column of images into variants, estimate, preview."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def process(
        self,
        variants: Iterable[Variant | Mapping[str, Any]] | Variant | Mapping[str, Any] | None = None,
        image_col: Hashable | None = None,
        out_dir: str | os.PathLike[str] = DEFAULT_OUT_DIR,
        backend: BackendLike = None,
        max_workers: int | None = None,
        errors: Errors = "coerce",
        progress: bool = True,
        cache: CacheLike = None,
        base_dir: str | os.PathLike[str] | None = None,
        draft: bool = False,
        only: Only = None,
        review_variant: str | None = None,
        preset: str | Any | None = None,
    ) -> pd.DataFrame:
        """Render every row's image into every variant; returns a new DataFrame.

        The result has the same index, order and columns plus ``bgcut_unique_filename``,
        ``<variant>_url`` and ``<variant>_path`` per variant, and ``bgcut_error`` (``""`` where
        the row succeeded). Outputs go to ``out_dir/<variant>/<stem>-<hash>.<ext>``. Relative
        image paths resolve against ``base_dir`` (default: the current directory). Outputs
        already rendered (same image bytes, same variant settings, same backend) are reused
        from ``cache`` without any request; uploads are reused for new variants.
        ``errors="raise"`` stops at the first bad row with
        :class:`~bgcut_nb.batch.runner.BatchError` (its ``.frame`` holds the finished rows);
        Ctrl-C raises ``KeyboardInterrupt`` with the same ``.frame`` (the rows so far). An
        ``out_dir`` that is a file is refused before any row is processed.

        ``draft=True`` renders review drafts: the local engine (whatever the API key), every
        variant capped at 0.25 MP, into ``<out_dir>-draft`` (:mod:`~bgcut_nb.notebook.review`).
        ``only="approved"`` processes only rows whose ``bgcut_review`` is ``"approved"`` (the
        frame's column, else the cache's decisions on ``review_variant``, default the first
        variant); the other rows keep their place with empty outputs, ``bgcut_error`` ``""``
        and the reason in ``bgcut_skipped``.

        ``preset="amazon-main"`` (or a :func:`bgcut_nb.preset` as ``variants``) adds the
        preset's cut-out variant and puts each cut-out on its square white canvas, client-side,
        in ``out_dir/<preset>/``: column ``<preset>_path`` (see :mod:`bgcut_nb.dataset`).
        """
        options = RunOptions(
            image_col=image_col,
            out_dir=out_dir,
            backend=backend,
            max_workers=max_workers,
            errors=errors,
            progress=progress,
            cache=cache,
            base_dir=base_dir,
            draft=draft,
            only=only,
            review_variant=review_variant,
            preset=preset,
        )
        return process_frame(self._frame, variants, options)

    def estimate_credits(
        self,
        variants: Iterable[Variant | Mapping[str, Any]] | Variant | Mapping[str, Any],
        image_col: Hashable | None = None,
        backend: BackendLike = None,
        cache: CacheLike = None,
        base_dir: str | os.PathLike[str] | None = None,
        only: Only = None,
        review_variant: str | None = None,
    ) -> float | dict[str, Any]:
        """Credits ``process`` would spend: rows whose outputs are cached and intact are free,
        and rows that cannot be read, are not PNG/JPEG/WebP or are over the backend's input
        limit (64 MP, read from the header) cost nothing (they fail before any charge); an
        :class:`EstimateWarning` names those rows.

        With ``only="approved"`` (as in ``process``), a dict: ``approved`` (credits for the
        approved rows), ``all`` (for the whole table), ``approved_rows`` and ``rows``."""
        options = RunOptions(
            image_col=image_col,
            backend=backend,
            cache=cache,
            base_dir=base_dir,
            only=only,
            review_variant=review_variant,
        ).check()
        frame = self._frame
        col = _image_col(frame, image_col)
        column = frame[col] if col is not None else pd.Series([], dtype=object)
        options = options.resolve()
        whole = self._estimate(column, variants, options)
        if only is None or col is None:
            return (
                whole
                if only is None
                else {"approved": whole, "all": whole, "approved_rows": 0, "rows": 0}
            )
        items = _items(frame[col])
        base, store = options.base_dir, options.store
        selection = _select(frame, col, items, variants, only, review_variant, base, store)
        with warnings.catch_warnings():  # the whole table's estimate has named them already
            warnings.simplefilter("ignore", EstimateWarning)
            subset = self._estimate(frame[col].iloc[selection.keep], variants, options)
        return {
            "approved": subset,
            "all": whole,
            "approved_rows": len(selection.keep),
            "rows": len(frame),
        }

    @property
    def stats(self) -> dict[str, Any]:
        """Counts of the run that produced this DataFrame (rows done/cached/failed, uploads,
        process calls, outputs rendered/reused); empty if it did not come from ``process``."""
        return dict(frame_meta(self._frame).get("stats", {}))

    def preview(self, **options: Any):
        """An ipywidgets viewer: one row at a time, the original and every variant side by side
        (see :func:`bgcut_nb.notebook.widgets.preview`)."""
        from .widgets import preview

        return preview(self._frame, **options)

    def gallery(self, variant: str | None = None, **options: Any):
        """A thumbnail grid of one variant's outputs (:func:`.widgets.gallery`)."""
        from .widgets import gallery

        return gallery(self._frame, variant, **options)

    def review(self, variant: str | None = None, *, cache: CacheLike = None, **options: Any):
        """Approve or reject each row's ``variant`` output, worst first, by button or key
        (:class:`.review.ReviewWidget`); decisions are saved in the reuse cache as you go and
        ``widget.frame`` has them in ``bgcut_review``."""
        from .review import ReviewWidget

        return ReviewWidget(self._frame, variant, cache=resolve_cache(cache), **options)

    def reviewed(
        self,
        variant: str | None = None,
        *,
        image_col: Hashable | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        cache: CacheLike = None,
    ) -> pd.DataFrame:
        """This frame with ``bgcut_review`` read from the reuse cache (decisions on
        ``variant``, default the first variant, by image content): a restarted kernel gets
        them back; ``.to_csv(...)`` exports them."""
        from .review import reviewed

        store = resolve_cache(cache)
        if store is None:
            raise ValueError("bgcut: decisions live in the reuse cache; cache=False has none")
        return reviewed(self._frame, variant, cache=store, image_col=image_col, base_dir=base_dir)

    # --- marketplace presets and dataset exports (logic in bgcut_nb.dataset) ---

    def _base_dir(self, base_dir: str | os.PathLike[str] | None) -> str | None:
        return str(base_dir) if base_dir is not None else frame_meta(self._frame).get("base_dir")

    def _output_col(self, variant: str | None) -> str:
        meta = frame_meta(self._frame)
        names = [v["variant_name"] for v in meta.get("variants", [])]
        if variant is None:
            if len(names) != 1:
                raise ValueError(f"bgcut: pass variant=, one of {names}")
            variant = names[0]
        if f"{variant}_path" not in self._frame.columns:
            raise KeyError(f"bgcut: no column {variant + '_path'!r}; variants here: {names}")
        return f"{variant}_path"

    def check(
        self,
        preset: str | Any,
        col: Hashable | None = None,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> pd.DataFrame:
        """Check an image column against a marketplace preset's rules; returns the frame plus
        ``<preset>_ok``, ``<preset>_failed`` (required rules missed, with measured values,
        e.g. ``"purity 0.00 < 1.00; longest 512 < 1,000"``) and ``<preset>_warnings``
        (recommendations missed). ``col``: default the preset's canvas column when present,
        else the image column."""
        from ..dataset.presets import preset as get_preset
        from ..dataset.table import check_column

        spec = get_preset(preset)
        frame = self._frame
        if col is None:
            col = f"{spec.name}_path" if f"{spec.name}_path" in frame.columns else None
        col = infer_image_col(frame) if col is None else check_image_col(frame, col)
        base = self._base_dir(base_dir) if col == frame_meta(frame).get("image_col") else base_dir
        return frame.assign(**check_column(frame[col], spec, base))

    def export_masks(self, out_dir: str | os.PathLike[str], variant: str | None = None):
        """Write each output's mask (alpha > 127) as an 8-bit 0/255 PNG in ``out_dir``;
        returns the frame plus ``<variant>_mask_path`` and ``<variant>_mask_error``."""
        from ..dataset.table import mask_columns

        col = self._output_col(variant)
        name = col[: -len("_path")]
        paths, errors = mask_columns(self._frame[col], Path(out_dir).expanduser())
        return self._frame.assign(**{f"{name}_mask_path": paths, f"{name}_mask_error": errors})

    def export_coco(
        self,
        path: str | os.PathLike[str],
        variant: str | None = None,
        only: str | None = None,
        category: str = "foreground",
        base_dir: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """Write a COCO annotations file (RLE segmentation, bbox, area; via pycocotools) for
        the rows with an output of ``variant``; ``only="approved"`` keeps the rows whose
        ``bgcut_review`` says so. Images are named by the image column's paths. Returns the
        dataset written."""
        from ..dataset.table import export_coco

        frame = self._frame
        if only is not None:
            if "bgcut_review" not in frame.columns:
                raise KeyError("bgcut: only= needs a bgcut_review column (review the rows first)")
            frame = frame[frame["bgcut_review"] == only]
        image_col = frame_meta(self._frame).get("image_col")
        return export_coco(
            frame,
            Path(path).expanduser(),
            self._output_col(variant),
            image_col=image_col if image_col in frame.columns else None,
            base_dir=self._base_dir(base_dir),
            category=category,
        )

    def manifest(self, path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
        """One row per output file (variants, preset canvases, masks): row, output, path, URL,
        bytes, sha256, width, height, format, and ``bgcut_error`` / ``bgcut_flags`` /
        ``bgcut_risk`` / ``bgcut_review`` when present; written to ``path`` (.csv or
        .parquet) when given."""
        from ..dataset.exports import manifest_frame, write_table
        from ..dataset.table import output_columns_of

        meta = frame_meta(self._frame)
        names = [v["variant_name"] for v in meta.get("variants", [])]
        table = manifest_frame(
            self._frame, output_columns_of(self._frame, names, meta.get("presets", []))
        )
        if path is not None:
            write_table(table, Path(path).expanduser())
        return table


@pd.api.extensions.register_series_accessor("bgcut")
class BgcutSeriesAccessor(_Common):
    """``s.bgcut`` on a Series of image paths (or bytes): ``process``, ``upload``, estimates."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def _frame(self) -> tuple[pd.DataFrame, Hashable]:
        name = self._series.name if self._series.name is not None else "image"
        return self._series.to_frame(name=name), name

    def process(
        self,
        variants: Iterable[Variant | Mapping[str, Any]] | Variant | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> pd.DataFrame:
        """Same as ``DataFrame.bgcut.process`` on a one-column frame of this Series (a
        ``preset=`` too)."""
        frame, name = self._frame()
        return frame.bgcut.process(variants, image_col=name, **options)

    def upload(
        self,
        backend: BackendLike = None,
        max_workers: int | None = None,
        errors: Errors = "coerce",
        progress: bool = True,
        cache: CacheLike = None,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> pd.Series:
        """Upload every image once; a Series of ``unique_filename`` (``None`` where the row
        failed; the causes, row by row, are in ``.attrs["bgcut_errors"]``). Remembered uploads
        are reused."""
        options = RunOptions(
            backend=backend,
            max_workers=max_workers,
            errors=errors,
            progress=progress,
            cache=cache,
            base_dir=base_dir,
        ).resolve()
        engine = options.engine
        result = upload_batch(_items(self._series), options)
        out = pd.Series(
            [r.unique_filename or None for r in result.rows],
            index=self._series.index,
            name=UNIQUE_FILENAME_COL,
            dtype=object,
        )
        out.attrs["bgcut_errors"] = [r.error for r in result.rows]
        out.attrs[META_KEY] = {"backend": engine.identity, "stats": result.stats.to_dict()}
        return out

    def estimate_credits(
        self,
        variants: Iterable[Variant | Mapping[str, Any]] | Variant | Mapping[str, Any],
        backend: BackendLike = None,
        cache: CacheLike = None,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> float:
        """Credits ``process`` would spend on this Series (cached rows are free, rows that will
        fail cost nothing and are named in an :class:`EstimateWarning`)."""
        options = RunOptions(backend=backend, cache=cache, base_dir=base_dir)
        return self._estimate(self._series, variants, options.resolve())
