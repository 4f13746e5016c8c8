"""The batch runner behind ``df.bgcut.process``: many rows, a bounded pool, nothing done twice.

For each row it reads the image, hashes it, serves every variant whose output is already on disk
from the :class:`~bgcut_nb.batch.reuse.ReuseCache`, and sends one processing call with all
the rest, re-using a remembered upload when there is one. A bad row gets its error and the batch
carries on; 401, 402 and a missing model stop it early, keeping every finished row; Ctrl-C cancels
what has not started, lets running rows finish into the cache, and a re-run resumes from there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..contract.backend import Backend, ProcessResult
from ..contract.errors import (
    APIError,
    AuthenticationError,
    BatchError,
    BgcutError,
    InsufficientCreditsError,
    ModelUnavailableError,
    NotFoundError,
)
from ..contract.variants import Variant, parse_variants
from ..contract.wire import process_idempotency_key
from ..core.atomic import atomic_writer
from ..core.names import safe_filename
from ..core.sources import image_source
from .concurrency import GatedBackend, plan
from .options import DEFAULT_OUT_DIR, Errors, RunOptions
from .reuse import CacheScope, OutputRecord, ReuseCache, sha256_bytes, sha256_file

__all__ = [
    "BatchError",
    "BatchResult",
    "BatchStats",
    "BatchStoppedWarning",
    "RowResult",
    "output_path",
    "run_batch",
    "upload_batch",
    "safe_dirname",
    "check_folder",
    "plural",
    "DEFAULT_OUT_DIR",
    "RunOptions",
]

log = logging.getLogger(__name__)

#: Attempts per output download (the backend retries within each; this covers a download that
#: broke off mid-stream or ran out of the backend's retries).
DOWNLOAD_ATTEMPTS = 3

#: Errors that no other row can escape either: stop instead of failing every row the same way.
FATAL_ERRORS = (AuthenticationError, InsufficientCreditsError, ModelUnavailableError)


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``"1 row"``, ``"2 rows"``: ``count`` and the word that goes with it."""
    return f"{count} {singular if count == 1 else (many or singular + 's')}"


class BatchStoppedWarning(UserWarning):
    """The batch stopped early (401, 402, missing model); finished rows are kept."""


@dataclass
class RowResult:
    """What happened to one row."""

    status: Literal["done", "cached", "failed", "not_attempted"] = "not_attempted"
    unique_filename: str = ""
    urls: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    error: str = ""
    #: Each output's quality signals by variant name (see ``OutputRecord.signals``).
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class BatchStats:
    """Counts of one run: rows by outcome, and the backend calls it made or saved."""

    rows: int = 0
    done: int = 0
    cached: int = 0
    failed: int = 0
    not_attempted: int = 0
    uploads: int = 0
    uploads_reused: int = 0
    reuploads: int = 0
    process_calls: int = 0
    outputs_rendered: int = 0
    outputs_reused: int = 0
    downloads_resumed: int = 0
    seconds: float = 0.0
    stopped: str = ""
    #: 429 / 503 answers the backend saw (and retried) during the run, the most calls the run
    #: allowed in flight (0: no adaptive limit) and how often a 503 halved that limit.
    rate_limited: int = 0
    overloaded: int = 0
    concurrency: int = 0
    concurrency_cuts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BatchResult:
    """Every row's result, in input order, and the run's counts."""

    variants: list[Variant]
    rows: list[RowResult]
    stats: BatchStats


# -- names and paths ---------------------------------------------------------------------------
def safe_dirname(name: str) -> str:
    """A file-system-safe directory name for a ``variant_name`` that cannot leave its parent.

    Letters (any script), digits, ``_``, ``-`` and inner dots are kept; anything else becomes
    ``_``; leading dots go. When the name had to change, a short hash of the original is added
    so that two different names never share a directory (``"a/b"`` and ``"a_b"``).
    """
    text = unicodedata.normalize("NFC", str(name))
    cleaned = safe_filename(text, "")
    if cleaned == text and cleaned:
        return cleaned
    suffix = sha256_bytes(text.encode("utf-8", "surrogatepass"))[:8]
    return f"{cleaned}-{suffix}" if cleaned.strip("_") else f"variant-{suffix}"


def output_path(
    out_dir: str | os.PathLike[str], variant: Variant, stem: str, image_sha256: str
) -> Path:
    """``out_dir/<variant>/<stem>-<hash>.<ext>``; the hash covers the image and the rendering."""
    root = Path(out_dir).resolve()
    digest = sha256_bytes(f"{image_sha256}\n{variant.cache_key()}".encode())[:12]
    stem = safe_filename(stem, "image")
    dest = root / safe_dirname(variant.variant_name) / f"{stem}-{digest}"
    dest = dest.with_name(f"{dest.name}.{variant.extension}")
    if not dest.resolve().is_relative_to(root):  # belt and braces; safe_dirname prevents it
        raise ValueError(f"output path for variant {variant.variant_name!r} leaves out_dir")
    return dest


def check_folder(path: str | os.PathLike[str], what: str = "out_dir") -> Path:
    """``path`` resolved, if it is a folder or can be made one (nothing in the way is a file);
    else ``ValueError``, so a run is refused before any row is processed and paid for."""
    folder = Path(path).expanduser().resolve()
    for existing in (folder, *folder.parents):
        if existing.exists():
            if not existing.is_dir():
                where = "is a file" if existing == folder else f"is inside a file, {existing}"
                raise ValueError(f"bgcut: {what} {folder} {where}, not a folder")
            break
    return folder


# -- one row -----------------------------------------------------------------------------------
class _RowError(Exception):
    """A row-level failure with a message that names the cause."""


class _Stopped(Exception):
    """The batch was stopped before this row's work began."""


def _is_missing(value: object) -> bool:
    """None, NaN, NaT and pd.NA: what pandas puts in an empty cell."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (str, bytes, bytearray, memoryview, os.PathLike)):
        return False
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _read_source(value: object, base_dir: Path | None) -> tuple[bytes, str, str]:
    """``(bytes, stem, description)`` of one row's image, or a :class:`_RowError`."""
    if _is_missing(value):
        raise _RowError(f"missing image path ({value!r})")
    path = image_source(value, base_dir)
    if isinstance(path, bytes):
        return path, "image", f"{len(path)} bytes"
    if path is None and not isinstance(value, (str, os.PathLike)):
        raise _RowError(f"expected an image path, got {type(value).__name__} {value!r}")
    if path is None:
        raise _RowError("missing image path (empty string)")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _RowError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise _RowError(f"path is a directory, not an image: {path}") from None
    except OSError as exc:
        raise _RowError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        raise _RowError(f"empty file: {path}")
    return data, path.stem, str(path)


def _copy_intact(record: OutputRecord, dest: Path) -> OutputRecord:
    """Place a cached output at ``dest`` (atomically) unless the same bytes are already there."""
    if Path(record.path) == dest:
        return record
    existing = replace(record, path=str(dest))
    if not existing.is_intact():
        with open(record.path, "rb") as src, atomic_writer(dest) as dst:
            shutil.copyfileobj(src, dst)
    return existing


class _Runner:
    def __init__(self, variants: list[Variant], options: RunOptions, *, out_dir: Path) -> None:
        self.variants = variants
        self.backend: Backend = options.engine
        self.out_dir = out_dir
        self.cache: ReuseCache | None = options.store
        self.base_dir: Path | None = options.base_dir
        self.scope = CacheScope.of(self.backend)
        self.stop = threading.Event()
        self.stats = BatchStats()
        self._lock = threading.Lock()
        self._image_locks: dict[str, threading.Lock] = {}

    def _add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    def _upload(self, data: bytes, image_sha: str, filename: str) -> tuple[str, bool]:
        """``(unique_filename, reused)``: a remembered upload, else a fresh one."""
        if self.cache is not None:
            remembered = self.cache.get_upload(self.scope, image_sha)
            if remembered:
                self._add(uploads_reused=1)
                return remembered, True
        if self.stop.is_set():
            raise _Stopped
        result = self.backend.upload_image(_named(data, filename))
        self._add(uploads=1)
        if self.cache is not None:
            self.cache.put_upload(self.scope, image_sha, result.unique_filename)
        return result.unique_filename, False

    def _image_lock(self, image_sha: str) -> threading.Lock:
        with self._lock:
            return self._image_locks.setdefault(image_sha, threading.Lock())

    def process_row(self, value: object) -> RowResult:
        # No stop check before the cache: a row whose outputs are all cached costs nothing and
        # is served even after the batch stopped; paid work (upload, process) checks the flag.
        data, stem, source = _read_source(value, self.base_dir)
        image_sha = sha256_bytes(data)
        # Rows with the same bytes take turns, so the later ones find the outputs cached.
        with self._image_lock(image_sha):
            return self._process_image(data, stem, image_sha, source)

    def _process_image(self, data: bytes, stem: str, image_sha: str, source: str) -> RowResult:
        row = RowResult()
        pending = self._serve_cached(row, image_sha, stem)
        if not pending:
            row.status = "cached"
            return row
        pending = self._resume_paid(row, image_sha, pending)
        if not pending:
            return self._finish_row(row)
        suffix = Path(source).suffix if stem != "image" else ""
        filename = f"{safe_filename(stem, 'image')}{suffix}"
        wanted = [variant for variant, _ in pending]
        unique_filename, result = self._upload_and_process(data, image_sha, filename, wanted)
        self._add(process_calls=1)
        row.unique_filename = result.unique_filename or unique_filename
        missing = [v.variant_name for v, _ in pending if not result.output_urls.get(v.variant_name)]
        if missing:
            raise _RowError(f"the backend returned no output for variant {missing[0]!r}")
        self._remember_paid(row, image_sha, pending, result)
        for variant, dest in pending:
            url = result.output_urls[variant.variant_name]
            self._fetch_output(row, image_sha, variant, dest, url, row.unique_filename)
            self._add(outputs_rendered=1)
        return self._finish_row(row)

    def _serve_cached(
        self, row: RowResult, image_sha: str, stem: str
    ) -> list[tuple[Variant, Path]]:
        """Place every output the cache holds intact into ``row``; returns the rest to make."""
        pending: list[tuple[Variant, Path]] = []
        for variant in self.variants:
            dest = output_path(self.out_dir, variant, stem, image_sha)
            record = None
            if self.cache is not None:
                record = self.cache.get_output(self.scope, image_sha, variant.cache_key())
            if record is None:
                pending.append((variant, dest))
                continue
            placed = _copy_intact(record, dest)
            if placed.signals is None:  # cached before signals were kept: assess it now
                placed = replace(placed, signals=self._signals(placed.url, dest, variant))
            if placed is not record:
                self.cache.put_output(self.scope, image_sha, variant.cache_key(), placed)
            row.paths[variant.variant_name] = placed.path
            row.urls[variant.variant_name] = placed.url
            row.unique_filename = row.unique_filename or placed.unique_filename
            row.signals[variant.variant_name] = placed.signals or {}
            self._add(outputs_reused=1)
        return pending

    def _upload_and_process(
        self, data: bytes, image_sha: str, filename: str, wanted: list[Variant]
    ) -> tuple[str, ProcessResult]:
        """The upload (or the remembered one) and one process call for ``wanted``; a call
        sent earlier whose answer was never recorded goes again with the same upload and key."""
        asked = _variants_key(wanted)
        remembered = None
        if self.cache is not None:
            remembered = self.cache.get_pending_process(self.scope, image_sha, asked)
        key = None
        if remembered is not None:
            (unique_filename, key), reused = remembered, True
        else:
            unique_filename, reused = self._upload(data, image_sha, filename)
        if self.stop.is_set():
            raise _Stopped
        try:
            return unique_filename, self._process(unique_filename, wanted, image_sha, asked, key)
        except NotFoundError:
            if not reused:
                raise
            # The service forgot the upload before we did: forget it too and upload once more.
            self.cache.evict_upload(self.scope, image_sha)
            self.cache.forget_pending_process(self.scope, image_sha, asked)
            unique_filename, _ = self._upload(data, image_sha, filename)
            self._add(reuploads=1)
            return unique_filename, self._process(unique_filename, wanted, image_sha, asked)

    def _remember_paid(
        self,
        row: RowResult,
        image_sha: str,
        pending: list[tuple[Variant, Path]],
        result: ProcessResult,
    ) -> None:
        """Paid for: remember every URL before any download, and forget the pending call."""
        if self.cache is None:
            return
        for variant, _ in pending:
            self.cache.put_paid_output(
                self.scope,
                image_sha,
                variant.cache_key(),
                url=result.output_urls[variant.variant_name],
                unique_filename=row.unique_filename,
            )
        asked = _variants_key([variant for variant, _ in pending])
        self.cache.forget_pending_process(self.scope, image_sha, asked)

    def _process(
        self,
        unique_filename: str,
        wanted: list[Variant],
        image_sha: str,
        asked: str,
        key: str | None = None,
    ) -> ProcessResult:
        """One ``process-image`` call under an Idempotency-Key derived from what it asks (or
        the remembered ``key``), kept in the cache until its answer is recorded."""
        if not getattr(self.backend, "accepts_idempotency_key", False):
            return self.backend.process_image(unique_filename, wanted)
        key = key or process_idempotency_key(
            self.scope.key_fingerprint, unique_filename, [v.to_dict() for v in wanted], image_sha
        )
        if self.cache is not None:
            self.cache.put_pending_process(
                self.scope,
                image_sha,
                asked,
                unique_filename=unique_filename,
                idempotency_key=key,
            )
        return self.backend.process_image(unique_filename, wanted, idempotency_key=key)

    def _finish_row(self, row: RowResult) -> RowResult:
        # keep the caller's variant order in the row's dicts
        row.paths = {v.variant_name: row.paths[v.variant_name] for v in self.variants}
        row.urls = {v.variant_name: row.urls[v.variant_name] for v in self.variants}
        row.status = "done"
        return row

    def _resume_paid(
        self, row: RowResult, image_sha: str, pending: list[tuple[Variant, Path]]
    ) -> list[tuple[Variant, Path]]:
        """Download outputs paid for earlier whose download failed; returns what is left.

        A remembered URL the backend no longer serves (404: expired) is forgotten and its
        variant processed again; any other failure fails the row, to be resumed next time.
        """
        if self.cache is None:
            return pending
        left = []
        for variant, dest in pending:
            paid = self.cache.get_paid_output(self.scope, image_sha, variant.cache_key())
            if paid is None:
                left.append((variant, dest))
                continue
            url, unique_filename = paid
            try:
                self._fetch_output(row, image_sha, variant, dest, url, unique_filename)
            except NotFoundError:
                self.cache.forget_paid_output(self.scope, image_sha, variant.cache_key())
                left.append((variant, dest))
                continue
            row.unique_filename = row.unique_filename or unique_filename
            self._add(downloads_resumed=1)
        return left

    def _fetch_output(
        self,
        row: RowResult,
        image_sha: str,
        variant: Variant,
        dest: Path,
        url: str,
        unique_filename: str,
    ) -> None:
        """Download one output (retried), record it in the cache and in ``row``."""
        for attempt in range(DOWNLOAD_ATTEMPTS):
            try:
                self.backend.download(url, dest)
                break
            except NotFoundError:
                raise
            except (BgcutError, OSError) as exc:
                retryable = not isinstance(exc, APIError) or exc.status >= 500 or exc.status == 429
                if attempt + 1 >= DOWNLOAD_ATTEMPTS or not retryable or self.stop.is_set():
                    raise
                time.sleep(0.2 * 2**attempt)
        record = OutputRecord(
            path=str(dest),
            size=dest.stat().st_size,
            sha256=sha256_file(dest),
            url=url,
            unique_filename=unique_filename,
            signals=self._signals(url, dest, variant),
        )
        if self.cache is not None:
            key = variant.cache_key()
            self.cache.put_output(self.scope, image_sha, key, record)
            self.cache.forget_paid_output(self.scope, image_sha, key)
        row.paths[variant.variant_name] = record.path
        row.urls[variant.variant_name] = url
        row.signals[variant.variant_name] = record.signals or {}

    def _signals(self, url: str, dest: Path, variant: Variant) -> dict[str, Any]:
        """The output's quality signals from the backend (``{}`` when it measures none); a
        failure to measure is logged and never fails the row."""
        try:
            return dict(self.backend.output_signals(url, dest, variant) or {})
        except Exception as exc:  # a bad measurement must not lose a paid output
            log.warning("could not measure the quality signals of %s: %s", dest, exc)
            return {}

    def upload_row(self, value: object) -> RowResult:
        data, stem, _ = _read_source(value, self.base_dir)
        suffix = Path(str(value)).suffix if stem != "image" else ""
        filename = f"{safe_filename(stem, 'image')}{suffix}"
        unique_filename, reused = self._upload(data, sha256_bytes(data), filename)
        return RowResult(status="cached" if reused else "done", unique_filename=unique_filename)


class _NamedBytes:
    """A binary file object over bytes with a ``name`` (so uploads keep the file name)."""

    def __init__(self, data: bytes, name: str) -> None:
        self._data = data
        self.name = name

    def read(self, size: int = -1) -> bytes:
        data, self._data = (self._data, b"") if size < 0 else (self._data[:size], self._data[size:])
        return data


def _variants_key(variants: list[Variant]) -> str:
    """Canonical text of a variant set as sent (names and order included)."""
    return json.dumps([v.to_dict() for v in variants], sort_keys=True, separators=(",", ":"))


def _named(data: bytes, filename: str) -> _NamedBytes:
    return _NamedBytes(data, filename or "image")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _RowError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


# -- the batch ---------------------------------------------------------------------------------
_HINTS = {
    AuthenticationError: "the API key was rejected; check BGCUT_API_KEY",
    InsufficientCreditsError: (
        "the account is out of credits; top up, or check the cost first with "
        "df.bgcut.estimate_credits(variants)"
    ),
    ModelUnavailableError: "the local engine has no model; see `bgcut-nb models`",
}


def _hint(exc: BaseException) -> str:
    for cls, hint in _HINTS.items():
        if isinstance(exc, cls):
            return f" ({hint})"
    return ""


def run_batch(
    items: Iterable[tuple[Hashable, object]],
    variants: Iterable[Variant | Mapping[str, Any]],
    options: RunOptions | None = None,
    *,
    desc: str = "bgcut",
    **given: Any,
) -> BatchResult:
    """Process ``(label, image)`` items into every variant; see the module docstring.

    ``options`` (a :class:`RunOptions`, resolved here if it is not yet) or its fields as
    keywords (which override it): ``backend``, ``out_dir``, ``cache``, ``base_dir``,
    ``max_workers``, ``errors``, ``progress``, with ``df.bgcut.process``'s meanings
    (``cache=None`` is the shared cache; ``False``: none). ``image`` is a path (relative ones
    resolve against ``base_dir``) or bytes. With ``errors="coerce"`` a failed row's cause lands
    in its ``error``; with ``errors="raise"`` the first failure stops the batch and raises
    :class:`BatchError` naming the row. Results are in input order (``result.rows[i]`` belongs to
    the i-th item), so repeated labels are fine.
    """
    opts = replace(options or RunOptions(), **given).resolve()
    parsed = parse_variants(variants)
    runner = _Runner(parsed, opts, out_dir=check_folder(opts.out_dir))
    return _run_pool(list(items), runner, runner.process_row, opts, desc)


def upload_batch(
    items: Iterable[tuple[Hashable, object]],
    options: RunOptions | None = None,
    *,
    desc: str = "bgcut upload",
    **given: Any,
) -> BatchResult:
    """Upload each item once (re-using remembered uploads); rows carry ``unique_filename``.
    ``options`` and keywords as in :func:`run_batch` (``out_dir`` is not used)."""
    opts = replace(options or RunOptions(), **given).resolve()
    runner = _Runner([], opts, out_dir=Path(DEFAULT_OUT_DIR))
    return _run_pool(list(items), runner, runner.upload_row, opts, desc)


def _run_pool(
    items: list[tuple[Hashable, object]],
    runner: _Runner,
    work: Callable[[object], RowResult],
    options: RunOptions,
    desc: str,
) -> BatchResult:
    """Run ``work`` over the items on a bounded pool with progress, stop rules and Ctrl-C."""
    backend = runner.backend
    concurrency = plan(backend, options.max_workers)
    before = backend.pressure()
    if concurrency.gate is not None:  # adaptive in-flight limit; downloads overlap (throughput.py)
        runner.backend = GatedBackend(backend, concurrency.gate, runner.stop, _Stopped)
    pool = _Pool(items, runner, work, options.errors)
    try:
        pool.run(concurrency.threads, options.progress, desc)
    finally:
        after, stats = backend.pressure(), runner.stats
        stats.rate_limited = after.get("rate_limited", 0) - before.get("rate_limited", 0)
        stats.overloaded = after.get("overloaded", 0) - before.get("overloaded", 0)
        if concurrency.gate is not None:
            stats.concurrency = concurrency.gate.peak
            stats.concurrency_cuts = concurrency.gate.decreases
    return pool.result()


def _mark_failures(bar: Any, failed: int) -> None:
    """A notebook bar of a batch with failed rows turns amber (tqdm makes a full bar green)."""
    if failed and callable(getattr(bar, "disp", None)) and hasattr(bar, "container"):
        bar.disp(bar_style="warning", check_delay=False)


class _Pool:
    """One batch on a thread pool: submit in order, record each row, stop on a fatal error."""

    def __init__(
        self,
        items: list[tuple[Hashable, object]],
        runner: _Runner,
        work: Callable[[object], RowResult],
        errors: Errors,
    ) -> None:
        self.items = items
        self.runner = runner
        self.work = work
        self.errors = errors
        self.stats = runner.stats
        self.stats.rows = len(items)
        self.rows: list[RowResult] = [RowResult() for _ in items]
        self.failure: tuple[Hashable, BaseException] | None = None
        self.bar: Any = None

    def _stops_batch(self, exc: BaseException) -> bool:
        return isinstance(exc, FATAL_ERRORS) or self.errors == "raise"

    def _guarded(self, value: object) -> RowResult:
        # Stop at once, in the worker, so no queued row starts paid work after a fatal error.
        try:
            return self.work(value)
        except _Stopped:
            raise
        except Exception as exc:
            if self._stops_batch(exc):
                self.runner.stop.set()
            raise

    def _record(self, position: int, future: Future) -> None:
        try:
            row = future.result()
        except _Stopped:
            return
        except Exception as exc:  # a row's failure never takes the batch down
            row = RowResult(status="failed", error=_describe(exc))
            if self._stops_batch(exc) and self.failure is None:
                self.failure = (self.items[position][0], exc)
                self.runner.stop.set()
        self.rows[position] = row
        stats = self.stats
        setattr(stats, row.status, getattr(stats, row.status) + 1)
        # the counts first, then the step that redraws: the bar never shows last row's counts
        self.bar.set_postfix(
            done=stats.done, cached=stats.cached, failed=stats.failed, refresh=False
        )
        self.bar.update(1)

    def run(self, workers: int, progress: bool, desc: str) -> None:
        """Every item through the pool, at most ``2 * workers`` queued; Ctrl-C drains it."""
        from tqdm.auto import tqdm

        started = time.perf_counter()
        self.bar = tqdm(total=len(self.items), desc=desc, unit="row", disable=not progress)
        in_flight: dict[Future, int] = {}
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bgcut")
        try:
            position = 0
            while True:
                while (
                    position < len(self.items)
                    and not self.runner.stop.is_set()
                    and len(in_flight) < 2 * workers
                ):
                    in_flight[executor.submit(self._guarded, self.items[position][1])] = position
                    position += 1
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:  # dropped once recorded: Ctrl-C may come in between
                    self._record(in_flight[future], future)
                    del in_flight[future]
        except KeyboardInterrupt:
            self._drain(in_flight)
            raise self._interrupted() from None
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            self.stats.seconds = time.perf_counter() - started
            s = self.stats
            self.bar.set_postfix(done=s.done, cached=s.cached, failed=s.failed)
            self.bar.close()
            _mark_failures(self.bar, s.failed)

    def _drain(self, in_flight: dict[Future, int]) -> None:
        """After Ctrl-C: cancel what has not started, let running rows finish and record them."""
        self.runner.stop.set()
        for future in in_flight:
            future.cancel()
        for future, position in in_flight.items():
            if not future.cancelled() and self.rows[position].status == "not_attempted":
                wait([future])
                self._record(position, future)

    def _interrupted(self) -> KeyboardInterrupt:
        """After Ctrl-C and :meth:`_drain`: the ``KeyboardInterrupt`` to raise, its ``result``
        holding every row so far (rows not started say so; the accessors add ``frame``)."""
        stats = self.stats
        for status in ("done", "cached", "failed"):  # recounted: Ctrl-C may split a record
            setattr(stats, status, sum(row.status == status for row in self.rows))
        for row in self.rows:
            if row.status == "not_attempted":
                row.error = "not attempted: the batch was interrupted (Ctrl-C)"
        stats.not_attempted = sum(row.status == "not_attempted" for row in self.rows)
        stats.stopped = "interrupted"
        interrupt = KeyboardInterrupt(
            f"bgcut: interrupted after {stats.done + stats.cached} of "
            f"{plural(stats.rows, 'row')}; finished rows are cached, run the same call again "
            "to resume"
        )
        interrupt.result = BatchResult(self.runner.variants, self.rows, stats)
        return interrupt

    def result(self) -> BatchResult:
        """The rows in input order; warns (or raises :class:`BatchError`) if the batch stopped."""
        stats = self.stats
        stats.not_attempted = sum(row.status == "not_attempted" for row in self.rows)
        result = BatchResult(variants=self.runner.variants, rows=self.rows, stats=stats)
        if self.failure is None:
            return result
        label, exc = self.failure
        why = f"row {label!r} failed with {_describe(exc)}{_hint(exc)}"
        stats.stopped = f"stopped early: {why}"
        for row in self.rows:
            if row.status == "not_attempted":
                row.error = f"not attempted: the batch stopped early because {why}"
        message = (
            f"bgcut: row {label!r} failed: {_describe(exc)}{_hint(exc)}. The batch stopped; "
            f"{plural(stats.done + stats.cached, 'finished row is', 'finished rows are')} kept "
            f"(and cached), {plural(stats.not_attempted, 'row was', 'rows were')} not attempted."
        )
        if self.errors == "raise":
            raise BatchError(message, row=label, result=result) from exc
        import warnings

        warnings.warn(message, BatchStoppedWarning, stacklevel=4)
        return result
