"""One run's options, as ``df.bgcut.process``, ``ddf.bgcut.process`` and ``bgcut-nb process``
take them, and their normalisation (backend and cache chosen, folders made absolute) in one place.

:class:`RunOptions` holds what the user passed; :meth:`RunOptions.resolve` returns the same
options normalised: ``backend`` a :class:`~bgcut_nb.contract.backend.Backend`, ``cache`` a
:class:`~bgcut_nb.batch.reuse.ReuseCache` or ``False`` (no cache), ``out_dir`` and ``base_dir``
absolute paths. Resolving resolved options changes nothing, so every layer may call it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..contract.backend import Backend
from ..core.config import resolve_api_base, resolve_api_key, resolve_storage_dir
from .reuse import ReuseCache, default_cache

__all__ = [
    "RunOptions",
    "BackendLike",
    "CacheLike",
    "Errors",
    "Only",
    "DEFAULT_OUT_DIR",
    "forget_backends",
    "local_storage_dir",
    "resolve_backend",
    "resolve_cache",
]

#: Where outputs go when no ``out_dir`` is given (relative to the current directory).
DEFAULT_OUT_DIR = "bgcut-output"

#: A backend, ``"local"``, ``"remote"`` or ``"auto"``/``None``.
BackendLike = Backend | str | None
#: ``None``/``True``: the shared cache in ``BGCUT_CACHE_DIR``; a folder; a cache; ``False``: none.
CacheLike = ReuseCache | str | os.PathLike[str] | bool | None
Errors = Literal["coerce", "raise"]
#: ``process(..., only="approved")``: which rows to process (``None``: all).
Only = Literal["approved"] | None

_backends: dict[tuple, Backend] = {}
_backends_lock = threading.Lock()
_scratch: list[Path] = []


@dataclass(frozen=True)
class RunOptions:
    """The options of one batch run (the keywords of ``df.bgcut.process``; see there)."""

    image_col: Hashable | None = None
    out_dir: str | os.PathLike[str] = DEFAULT_OUT_DIR
    #: on Dask also a zero-argument function returning a backend (called on each worker)
    backend: BackendLike | Callable[[], Backend] = None
    max_workers: int | None = None
    errors: Errors = "coerce"
    progress: bool = True
    cache: CacheLike = None
    base_dir: str | os.PathLike[str] | None = None
    draft: bool = False
    only: Only = None
    review_variant: str | None = None
    preset: str | Any | None = None

    def check(self) -> RunOptions:
        """Refuse values no run can use (``ValueError``), before anything is resolved."""
        if self.errors not in ("coerce", "raise"):
            raise ValueError("errors must be 'coerce' or 'raise'")
        if self.max_workers is not None and self.max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if self.only not in (None, "approved"):
            raise ValueError("only must be None or 'approved'")
        return self

    def resolve(self) -> RunOptions:
        """These options normalised (see the module docstring); idempotent."""
        self.check()
        return replace(
            self,
            backend=resolve_backend(self.backend, cache=self.cache),
            cache=_or_false(self.cache),
            out_dir=Path(self.out_dir).expanduser().resolve(),
            base_dir=absolute(self.base_dir),
        )

    @property
    def store(self) -> ReuseCache | None:
        """The reuse cache these options name (``None``: no cache)."""
        return resolve_cache(self.cache)

    @property
    def engine(self) -> Backend:
        """The backend of resolved options (``TypeError`` before :meth:`resolve`)."""
        if not isinstance(self.backend, Backend):
            raise TypeError("RunOptions.engine needs resolved options (call resolve() first)")
        return self.backend


def _or_false(cache: CacheLike) -> ReuseCache | bool:
    store = resolve_cache(cache)
    return False if store is None else store


def absolute(path: str | os.PathLike[str] | None) -> Path | None:
    """``path`` with ``~`` expanded, made absolute; ``None`` stays ``None``."""
    return Path(path).expanduser().resolve() if path is not None else None


def local_storage_dir(cache: CacheLike = None) -> Path:
    """Where the local engine that :func:`resolve_backend` makes for this ``cache`` setting
    keeps its uploads, mattes and outputs: ``local-engine/`` inside the cache folder
    (``cache=<dir>``, a :class:`ReuseCache`'s directory, else ``BGCUT_CACHE_DIR``); with
    ``cache=False``, a temporary folder of this process, removed when it exits."""
    if cache is False:
        return _scratch_dir()
    if isinstance(cache, ReuseCache):
        cache = cache.directory
    return resolve_storage_dir(cache_dir=None if cache in (None, True) else cache).resolve()


def _scratch_dir() -> Path:
    with _backends_lock:
        if not _scratch:
            path = Path(tempfile.mkdtemp(prefix="bgcut-local-engine-"))
            atexit.register(shutil.rmtree, path, True)
            _scratch.append(path)
        return _scratch[0]


def resolve_backend(backend: BackendLike = None, *, cache: CacheLike = None) -> Backend:
    """A :class:`Backend` for ``backend``: itself, ``"local"``, ``"remote"`` or ``None`` (auto).

    Auto means the HTTP API when an API key is configured, else the local engine, whose storage
    follows ``cache`` (:func:`local_storage_dir`). Backends made here are shared per
    configuration, so uploads and loaded models survive between calls.
    """
    if isinstance(backend, Backend):
        return backend
    if backend not in (None, "auto", "local", "remote"):
        raise ValueError("backend must be a Backend, 'local', 'remote', 'auto' or None")
    key = resolve_api_key()
    kind = backend if backend in ("local", "remote") else ("remote" if key else "local")
    storage = local_storage_dir(cache) if kind == "local" else None
    with _backends_lock:
        if kind == "remote":
            if key is None:
                raise ValueError("backend='remote' needs an API key: set BGCUT_API_KEY")
            memo = ("remote", resolve_api_base(), key.fingerprint)
            if memo not in _backends:
                from ..backends.remote import RemoteBackend

                _backends[memo] = RemoteBackend(api_key=key, api_base=memo[1])
        else:
            memo = ("local", str(storage))
            if memo not in _backends:
                from ..backends.local import LocalBackend

                _backends[memo] = LocalBackend(memo[1])
        return _backends[memo]


def forget_backends() -> None:
    """Forget the backends :func:`resolve_backend` made (they keep working for whoever holds
    them); the next run makes new ones."""
    with _backends_lock:
        _backends.clear()


def resolve_cache(cache: CacheLike = None) -> ReuseCache | None:
    """``None``/``True``: the shared cache in ``BGCUT_CACHE_DIR``; a path: that directory;
    ``False``: no cache (every run uploads and processes again)."""
    if cache is False:
        return None
    if isinstance(cache, ReuseCache):
        return cache
    return default_cache(None if cache in (None, True) else cache)
