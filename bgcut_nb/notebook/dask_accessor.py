"""``ddf.bgcut.process`` on a dask DataFrame: each partition is one ``df.bgcut.process`` run on a
worker of a ``dask.distributed`` cluster (needs the ``dask`` extra).

``import bgcut_nb.notebook.dask_accessor`` registers the accessor (``import bgcut_nb`` does it
for you when ``dask.dataframe`` was imported first; it never imports dask itself)::

    import dask.dataframe as dd
    import bgcut_nb.notebook.dask_accessor  # noqa: F401 - registers ddf.bgcut

    ddf = dd.read_csv("catalogue-*.csv")  # a column of image paths
    out = ddf.bgcut.process(variants, image_col="path", out_dir="/shared/cutouts")
    out.to_parquet("/shared/cutouts/results.parquet")  # or out.compute()

The result is lazy, with the same columns, index and per-row semantics as the pandas accessor.
Every worker process builds its own backend (from ``backend="auto"|"local"|"remote"`` and the
worker's own ``BGCUT_*`` environment, so the API key never travels in the task graph, or from a
zero-argument factory), its own model session and its own cache handle: backends are never
pickled. ``out_dir`` (and relative image paths, via ``base_dir``) must name the same folder on
every worker: a shared filesystem.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import pandas as pd
from dask.dataframe.extensions import register_dataframe_accessor

from ..batch.columns import (
    META_KEY,
    SIGNAL_COLUMNS,
    check_image_col,
    infer_image_col,
    output_columns,
)
from ..batch.options import DEFAULT_OUT_DIR, CacheLike, Errors, Only, RunOptions, absolute
from ..batch.reuse import ReuseCache
from ..contract.backend import Backend
from ..contract.variants import Variant, parse_variants

__all__ = ["BgcutDaskAccessor", "process_partition"]

BackendSpec = str | Callable[[], Backend] | None

_made: dict[str, Backend] = {}
_made_lock = threading.Lock()


def _backend_on_worker(spec: BackendSpec) -> Backend | str | None:
    """The worker's backend: names resolve as in pandas (shared per process); a factory is
    called once per worker process and its backend kept for later partitions."""
    if spec is None or isinstance(spec, str):
        return spec
    import cloudpickle

    key = hashlib.sha256(cloudpickle.dumps(spec)).hexdigest()
    with _made_lock:
        if key not in _made:
            _made[key] = spec()
        return _made[key]


def process_partition(
    part: pd.DataFrame, variants: list[dict[str, Any]] | None, options: RunOptions
) -> pd.DataFrame:
    """One partition through ``df.bgcut.process`` on this worker (progress off)."""
    from .accessor import process_frame

    options = replace(options, backend=_backend_on_worker(options.backend), progress=False)
    out = process_frame(part, variants, options)
    # Per-partition counts differ; the settings every partition shares are kept.
    meta = dict(out.attrs.get(META_KEY, {}))
    meta.pop("stats", None)
    meta.pop("backend", None)
    out.attrs = {META_KEY: meta}
    return out


def _meta(frame: pd.DataFrame, names: list[str], options: RunOptions) -> pd.DataFrame:
    """The empty frame a partition's result looks like (columns in the pandas order)."""
    from .review import REVIEW_COL, SKIPPED_COL

    meta = frame.iloc[:0].copy()
    columns = output_columns(names)
    if options.only is not None:
        columns += [REVIEW_COL] if REVIEW_COL not in frame.columns else []
        columns += [SKIPPED_COL]
    if options.preset is not None:
        columns += [f"{options.preset.name}_path"]
    for column in columns:
        meta[column] = pd.Series(dtype=SIGNAL_COLUMNS.get(column, object))
    return meta


def _cache_spec(cache: ReuseCache | str | os.PathLike[str] | bool | None) -> str | bool | None:
    if isinstance(cache, ReuseCache):
        return str(cache.directory)
    if isinstance(cache, (str, os.PathLike)):
        return str(Path(cache).expanduser().resolve())
    return cache


@register_dataframe_accessor("bgcut")
class BgcutDaskAccessor:
    """``ddf.bgcut``: :meth:`process` partitions on the cluster."""

    def __init__(self, frame: dd.DataFrame) -> None:
        self._frame = frame

    def _infer_image_col(self) -> Hashable:
        """The image column, judged on the first partition's first rows (computes them)."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "insufficient elements for head"
            return infer_image_col(self._frame.head(200))

    def process(
        self,
        variants: Iterable[Variant | Mapping[str, Any]] | Variant | Mapping[str, Any] | None = None,
        image_col: Hashable | None = None,
        out_dir: str | os.PathLike[str] = DEFAULT_OUT_DIR,
        backend: BackendSpec = None,
        max_workers: int | None = None,
        errors: Errors = "coerce",
        progress: bool = True,
        cache: CacheLike = None,
        base_dir: str | os.PathLike[str] | None = None,
        draft: bool = False,
        only: Only = None,
        review_variant: str | None = None,
        preset: str | Any | None = None,
    ) -> dd.DataFrame:
        """The lazy equivalent of ``df.bgcut.process`` (see there for columns and semantics;
        ``draft``, ``only``, ``review_variant`` and ``preset`` work per partition as there).

        ``backend``: ``None``/``"auto"``, ``"local"``, ``"remote"`` (built on each worker from
        its environment) or a zero-argument function returning a backend (called once per
        worker process). ``cache``: ``None`` (each worker's ``BGCUT_CACHE_DIR``), a directory
        (every worker opens it: share it on a filesystem with working file locks), or
        ``False``. ``out_dir`` and ``base_dir`` are made absolute here (``base_dir`` defaults
        to this process's current directory), so workers resolve paths as pandas would.
        ``max_workers`` is the rows each partition runs at once. ``errors="raise"`` raises the
        first :class:`~bgcut_nb.batch.runner.BatchError` when the result is computed.
        ``only="approved"`` reads decisions from the frame's ``bgcut_review`` column, else from
        each worker's cache (share it). ``progress`` is accepted as in pandas and has no effect
        here: rows run on the workers, whose bars nobody sees; use Dask's own
        (``distributed.progress(ddf.persist())`` or the dashboard).
        """
        from ..dataset.presets import Preset
        from ..dataset.table import split_preset

        if isinstance(backend, Backend):
            raise TypeError(
                "ddf.bgcut.process builds a backend on every worker: pass 'auto', 'local', "
                "'remote' or a zero-argument function returning a backend, not an instance "
                "(backends are not sent to workers; RemoteBackend holds an API key)"
            )
        if isinstance(variants, (Variant, Mapping)):
            variants = [variants]
        spec, rendered = split_preset(variants, preset)
        extra = None if variants is None or isinstance(variants, Preset) else variants
        sent = [v.to_dict() for v in parse_variants(extra)] if extra is not None else None
        frame = self._frame
        col = self._infer_image_col() if image_col is None else check_image_col(frame, image_col)
        options = RunOptions(  # folders made absolute here: workers have other current dirs
            image_col=col,
            out_dir=str(absolute(out_dir)),
            backend=backend,
            max_workers=max_workers,
            errors=errors,
            progress=False,
            cache=_cache_spec(cache),
            base_dir=str(absolute(base_dir if base_dir is not None else Path.cwd())),
            draft=draft,
            only=only,
            review_variant=review_variant,
            preset=spec,
        ).check()
        names = [v.variant_name for v in parse_variants(rendered)]
        return frame.map_partitions(
            process_partition,
            sent,
            options,
            meta=_meta(frame._meta, names, options),
            enforce_metadata=False,
            align_dataframes=False,
        )
