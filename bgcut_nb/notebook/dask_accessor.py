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
from ..batch.reuse import ReuseCache
from ..batch.runner import DEFAULT_OUT_DIR, Errors
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
    part: pd.DataFrame,
    variants: list[dict[str, Any]],
    image_col: Hashable,
    out_dir: str,
    backend: BackendSpec,
    cache: str | bool | None,
    base_dir: str | None,
    errors: Errors,
    max_workers: int | None,
) -> pd.DataFrame:
    """One partition through ``df.bgcut.process`` on this worker (progress off)."""
    out = part.bgcut.process(
        variants,
        image_col=image_col,
        out_dir=out_dir,
        backend=_backend_on_worker(backend),
        max_workers=max_workers,
        errors=errors,
        progress=False,
        cache=cache,
        base_dir=base_dir,
    )
    # Per-partition counts differ; the settings every partition shares are kept.
    meta = dict(out.attrs.get(META_KEY, {}))
    meta.pop("stats", None)
    meta.pop("backend", None)
    out.attrs = {META_KEY: meta}
    return out


def _meta(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    meta = frame.iloc[:0].copy()
    for column in output_columns(names):
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
        variants: Iterable[Variant | Mapping[str, Any]] | Variant | Mapping[str, Any],
        image_col: Hashable | None = None,
        out_dir: str | os.PathLike[str] = DEFAULT_OUT_DIR,
        backend: BackendSpec = None,
        max_workers: int | None = None,
        errors: Errors = "coerce",
        cache: ReuseCache | str | os.PathLike[str] | bool | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
    ) -> dd.DataFrame:
        """The lazy equivalent of ``df.bgcut.process`` (see there for columns and semantics).

        ``backend``: ``None``/``"auto"``, ``"local"``, ``"remote"`` (built on each worker from
        its environment) or a zero-argument function returning a backend (called once per
        worker process). ``cache``: ``None`` (each worker's ``BGCUT_CACHE_DIR``), a directory
        (every worker opens it: share it on a filesystem with working file locks), or
        ``False``. ``out_dir`` and ``base_dir`` are made absolute here (``base_dir`` defaults
        to this process's current directory), so workers resolve paths as pandas would.
        ``max_workers`` is the rows each partition runs at once. ``errors="raise"`` raises the
        first :class:`~bgcut_nb.batch.runner.BatchError` when the result is computed.
        ``progress`` is accepted as in pandas and has no effect here: rows run on the workers,
        whose bars nobody sees; use Dask's own (``distributed.progress(ddf.persist())`` or
        the dashboard).
        """
        if isinstance(backend, Backend):
            raise TypeError(
                "ddf.bgcut.process builds a backend on every worker: pass 'auto', 'local', "
                "'remote' or a zero-argument function returning a backend, not an instance "
                "(backends are not sent to workers; RemoteBackend holds an API key)"
            )
        parsed = parse_variants(
            [variants] if isinstance(variants, (Variant, Mapping)) else variants
        )
        frame = self._frame
        col = self._infer_image_col() if image_col is None else check_image_col(frame, image_col)
        base = Path(base_dir).expanduser() if base_dir is not None else Path.cwd()
        return frame.map_partitions(
            process_partition,
            [v.to_dict() for v in parsed],
            col,
            str(Path(out_dir).expanduser().resolve()),
            backend,
            _cache_spec(cache),
            str(base.resolve()),
            errors,
            max_workers,
            meta=_meta(frame._meta, [v.variant_name for v in parsed]),
            enforce_metadata=False,
            align_dataframes=False,
        )
