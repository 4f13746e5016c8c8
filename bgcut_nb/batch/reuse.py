"""The reuse cache: which images are uploaded and which outputs are already on disk.

A :class:`ReuseCache` is a :class:`diskcache.Cache` (one directory, set by an argument or
``BGCUT_CACHE_DIR``, with a size limit) holding two kinds of entries:

* **uploads**: ``(backend identity, key fingerprint, SHA-256 of the image bytes)`` ->
  ``unique_filename``, expiring before the service forgets the upload (2 hours), so a later
  processing call with new variants needs no re-upload.
* **outputs**: ``(SHA-256 of the image bytes, canonical variant, backend identity, key
  fingerprint)`` -> where the rendered file was written, with its size and SHA-256, so a re-run
  costs nothing while the file is intact.
* **paid outputs** (same key): the output URL and ``unique_filename`` a ``process-image`` call
  answered, remembered as soon as it answers and until the file is downloaded (at most
  :data:`OUTPUT_URL_REUSE_TTL`), so a failed download is resumed from the URL instead of paying
  for the output again.
* **pending process calls** (image, the variant set asked for, backend, key fingerprint): the
  ``unique_filename`` and ``Idempotency-Key`` of a ``process-image`` call, remembered before it
  is sent and dropped once its answer is recorded as paid outputs, so a re-run after a lost
  answer (or a killed kernel) repeats the very same request and is answered without a second
  charge, even when the upload entry has expired meanwhile. Kept at most
  :data:`~bgcut_nb.contract.wire.UPLOAD_LIFETIME` (the upload, and so the answer, is gone then).
* **file hashes**: ``(path, size, mtime)`` -> SHA-256 of a file's bytes, so a table of image
  paths is hashed once (for review decisions and the approved subset), not on every look.

**Review decisions** (``"approved"`` / ``"rejected"``, by image SHA-256 and variant name) live
in a store of their own in the ``reviews/`` subfolder: they are a person's work, so the size
limit never evicts them and :meth:`ReuseCache.clear` keeps them unless asked for ``"review"``.

Keys hold a one-way fingerprint of the API key, never the key; values hold file paths, sizes,
hashes, ``unique_filename`` and output URLs, never a secret.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diskcache

from ..contract.wire import UPLOAD_LIFETIME, UPLOAD_REUSE_TTL
from ..core.config import resolve_cache_dir

__all__ = [
    "CacheScope",
    "ReuseCache",
    "OutputRecord",
    "DEFAULT_SIZE_LIMIT",
    "OUTPUT_URL_REUSE_TTL",
    "REVIEW_DECISIONS",
    "sha256_bytes",
    "sha256_file",
]

#: Default size limit of the cache database (entries are small; the files live in ``out_dir``).
DEFAULT_SIZE_LIMIT = 256 * 1024 * 1024
#: Output URLs are temporary (an hour on ``bgcut-nb serve``; the service does not say): a
#: remembered, not yet downloaded URL is tried for 30 minutes at most, then processed again.
OUTPUT_URL_REUSE_TTL = 30 * 60.0

_UPLOAD = "upload"
_OUTPUT = "output"
_PAID = "paid"
_PENDING = "pending"
_FILE = "file-sha256"
_REVIEW = "review"
#: Every kind of entry in the main store (each entry is tagged with its kind).
_KINDS = (_UPLOAD, _OUTPUT, _PAID, _PENDING, _FILE)
#: Set once every entry of the folder carries its kind as its tag.
_TAGGED = ("meta", "tagged-by-kind")
#: The decisions a review records; ``""`` means undecided (or skipped).
REVIEW_DECISIONS = ("approved", "rejected", "")
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheScope:
    """Whose entries: a backend's ``identity`` and the ``key_fingerprint`` of its API key (a
    one-way hash, never the key). Every upload and output entry is kept per scope."""

    identity: str
    key_fingerprint: str = ""

    @classmethod
    def of(cls, backend: Any) -> CacheScope:
        """The scope of a :class:`~bgcut_nb.contract.backend.Backend`."""
        return cls(backend.identity, backend.key_fingerprint)


@dataclass(frozen=True)
class OutputRecord:
    """A finished output: where it was written and how to tell it is still intact."""

    path: str
    size: int
    sha256: str
    url: str = ""
    unique_filename: str = ""
    #: Quality signals of the output (``Backend.output_signals``: measures, ``flags``,
    #: ``risk``); ``{}``: nothing to measure; ``None``: not assessed yet.
    signals: dict[str, Any] | None = None

    def is_intact(self) -> bool:
        """Whether the file is still there with the same size and bytes."""
        try:
            if os.stat(self.path).st_size != self.size:
                return False
            return sha256_file(self.path) == self.sha256
        except OSError:
            return False


class ReuseCache:
    """Uploads and finished outputs, remembered on disk across runs and kernels.

    ``counters`` counts this object's lookups (``upload_hits``, ``upload_misses``,
    ``output_hits``, ``output_misses``, ``output_stale``, ``upload_evictions``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        upload_ttl: float = UPLOAD_REUSE_TTL,
    ) -> None:
        if upload_ttl <= 0 or upload_ttl >= UPLOAD_LIFETIME:
            raise ValueError("upload_ttl must be positive and shorter than the 2-hour upload life")
        self.directory = resolve_cache_dir(directory)
        self.upload_ttl = float(upload_ttl)
        # No tag_index: diskcache creates that index without its busy retries while opening,
        # so processes opening a new folder at once (Dask workers) fail with "database is
        # locked"; evict(tag) finds entries without it.
        self._cache = diskcache.Cache(str(self.directory), size_limit=int(size_limit))
        self._lock = threading.Lock()
        self._tag_older_entries()
        self._review_store: diskcache.Cache | None = None
        self.counters: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"ReuseCache({str(self.directory)!r})"

    def _tag_older_entries(self) -> None:
        """Entries written before entries were tagged by kind get their tag (once per folder),
        so that :meth:`clear` finds them by tag; their values and expiry stay as they were."""
        if self._cache.get(_TAGGED):
            return
        now = time.time()
        for key in list(self._cache.iterkeys()):
            if not (isinstance(key, tuple) and key and key[0] in _KINDS):
                continue
            value, expire_time, tag = self._cache.get(key, expire_time=True, tag=True)
            if value is None or tag == key[0]:
                continue
            expire = None if expire_time is None else max(expire_time - now, 1e-3)
            self._cache.set(key, value, expire=expire, tag=key[0])
        self._cache.set(_TAGGED, True)

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    # -- uploads -------------------------------------------------------------------------------
    @staticmethod
    def _upload_key(scope: CacheScope, image_sha256: str) -> tuple:
        return (_UPLOAD, scope.identity, scope.key_fingerprint, image_sha256)

    def get_upload(self, scope: CacheScope, image_sha256: str) -> str | None:
        """The remembered ``unique_filename`` of these image bytes on this backend, if fresh."""
        value = self._cache.get(self._upload_key(scope, image_sha256))
        self._count("upload_hits" if value is not None else "upload_misses")
        return value

    def peek_upload(self, scope: CacheScope, image_sha256: str) -> bool:
        """Whether a fresh upload is remembered (not counted as a lookup)."""
        return self._upload_key(scope, image_sha256) in self._cache

    def put_upload(self, scope: CacheScope, image_sha256: str, unique_filename: str) -> None:
        """Remember an upload for ``upload_ttl`` seconds."""
        key = self._upload_key(scope, image_sha256)
        self._cache.set(key, str(unique_filename), expire=self.upload_ttl, tag=_UPLOAD)

    def evict_upload(self, scope: CacheScope, image_sha256: str) -> None:
        """Forget an upload the backend no longer knows (it answered 404)."""
        self._cache.delete(self._upload_key(scope, image_sha256))
        self._count("upload_evictions")

    # -- outputs -------------------------------------------------------------------------------
    @staticmethod
    def _output_key(scope: CacheScope, image_sha256: str, variant_key: str) -> tuple:
        return (_OUTPUT, image_sha256, variant_key, scope.identity, scope.key_fingerprint)

    def get_output(
        self, scope: CacheScope, image_sha256: str, variant_key: str, *, count: bool = True
    ) -> OutputRecord | None:
        """The remembered output of this image and variant if its file is still intact.

        An entry whose file is gone or changed is dropped. ``count=False`` leaves
        :attr:`counters` alone (for estimates).
        """
        key = self._output_key(scope, image_sha256, variant_key)
        value = self._cache.get(key)
        record = OutputRecord(**value) if value is not None else None
        if record is not None and not record.is_intact():
            self._cache.delete(key)
            if count:
                self._count("output_stale")
            record = None
        if count:
            self._count("output_hits" if record is not None else "output_misses")
        return record

    def put_output(
        self, scope: CacheScope, image_sha256: str, variant_key: str, record: OutputRecord
    ) -> None:
        """Remember a finished output (kept until evicted by size or cleared)."""
        key = self._output_key(scope, image_sha256, variant_key)
        self._cache.set(key, asdict(record), tag=_OUTPUT)

    # -- paid outputs not downloaded yet ---------------------------------------------------------
    @staticmethod
    def _paid_key(scope: CacheScope, image_sha256: str, variant_key: str) -> tuple:
        return (_PAID, image_sha256, variant_key, scope.identity, scope.key_fingerprint)

    def put_paid_output(
        self,
        scope: CacheScope,
        image_sha256: str,
        variant_key: str,
        *,
        url: str,
        unique_filename: str,
        ttl: float = OUTPUT_URL_REUSE_TTL,
    ) -> None:
        """Remember an output URL that ``process-image`` answered, before downloading it."""
        key = self._paid_key(scope, image_sha256, variant_key)
        value = {"url": url, "unique_filename": unique_filename}
        self._cache.set(key, value, expire=ttl, tag=_PAID)

    def get_paid_output(
        self, scope: CacheScope, image_sha256: str, variant_key: str
    ) -> tuple[str, str] | None:
        """``(url, unique_filename)`` of a paid output not downloaded yet, if remembered."""
        value = self._cache.get(self._paid_key(scope, image_sha256, variant_key))
        if not isinstance(value, dict):
            return None
        self._count("paid_output_hits")
        return str(value["url"]), str(value.get("unique_filename", ""))

    def forget_paid_output(self, scope: CacheScope, image_sha256: str, variant_key: str) -> None:
        """Drop a remembered URL (downloaded, or the service no longer serves it)."""
        self._cache.delete(self._paid_key(scope, image_sha256, variant_key))

    # -- process calls sent, answer not recorded yet ---------------------------------------------
    @staticmethod
    def _pending_key(scope: CacheScope, image_sha256: str, variants_key: str) -> tuple:
        return (_PENDING, image_sha256, variants_key, scope.identity, scope.key_fingerprint)

    def put_pending_process(
        self,
        scope: CacheScope,
        image_sha256: str,
        variants_key: str,
        *,
        unique_filename: str,
        idempotency_key: str,
    ) -> None:
        """Remember a ``process-image`` call about to be sent (``variants_key``: the canonical
        text of the variant set asked for, in order)."""
        key = self._pending_key(scope, image_sha256, variants_key)
        value = {"unique_filename": unique_filename, "idempotency_key": idempotency_key}
        self._cache.set(key, value, expire=UPLOAD_LIFETIME, tag=_PENDING)

    def get_pending_process(
        self, scope: CacheScope, image_sha256: str, variants_key: str
    ) -> tuple[str, str] | None:
        """``(unique_filename, idempotency_key)`` of a call whose answer was never recorded."""
        value = self._cache.get(self._pending_key(scope, image_sha256, variants_key))
        if not isinstance(value, dict):
            return None
        self._count("pending_process_hits")
        return str(value["unique_filename"]), str(value["idempotency_key"])

    def forget_pending_process(
        self, scope: CacheScope, image_sha256: str, variants_key: str
    ) -> None:
        """Drop a pending call (its answer is recorded, or its upload is gone)."""
        self._cache.delete(self._pending_key(scope, image_sha256, variants_key))

    # -- file hashes -------------------------------------------------------------------------
    def file_sha256(self, path: str | os.PathLike[str]) -> str:
        """SHA-256 of a file's bytes, remembered by (path, size, modification time).

        ``OSError`` (missing, unreadable) propagates. A file rewritten in place with the same
        size within the file system's timestamp resolution could be missed; outputs are
        content-hashed where that matters.
        """
        resolved = os.path.abspath(path)
        info = os.stat(resolved)
        key = (_FILE, resolved, info.st_size, info.st_mtime_ns)
        digest = self._cache.get(key)
        if digest is None:
            digest = sha256_file(resolved)
            self._cache.set(key, digest, tag=_FILE)
        return str(digest)

    # -- review decisions ------------------------------------------------------------------------
    @property
    def _reviews(self) -> diskcache.Cache:
        with self._lock:
            if self._review_store is None:  # opened on first use; never evicted by size
                self._review_store = diskcache.Cache(
                    str(self.directory / "reviews"), eviction_policy="none"
                )
            return self._review_store

    def put_review(
        self,
        image_sha256: str,
        variant_name: str,
        decision: str,
        *,
        variant_key: str = "",
        image: str = "",
    ) -> None:
        """Record a decision on one image's variant (``""`` forgets it: undecided again).

        ``variant_key`` (the canonical settings that were looked at, e.g. a draft's) and
        ``image`` (the path or name it was seen under) are kept for the record only: the key is
        the image's bytes and the variant's name, so a draft's decision holds for the final.
        """
        if decision not in REVIEW_DECISIONS:
            raise ValueError(f"decision must be one of {REVIEW_DECISIONS}, got {decision!r}")
        key = (_REVIEW, image_sha256, str(variant_name))
        if not decision:
            self._reviews.delete(key)
            return
        value = {
            "decision": decision,
            "variant_key": variant_key,
            "image": image,
            "decided_at": time.time(),
        }
        self._reviews.set(key, value)

    def get_review(self, image_sha256: str, variant_name: str) -> str:
        """The recorded decision (``"approved"``, ``"rejected"``), or ``""`` if none."""
        value = self._reviews.get((_REVIEW, image_sha256, str(variant_name)))
        return str(value["decision"]) if isinstance(value, dict) else ""

    def reviews(self, variant_name: str | None = None) -> list[dict[str, Any]]:
        """Every recorded decision (of one variant, if named), oldest first, as plain dicts:
        ``image_sha256``, ``variant``, ``decision``, ``image``, ``variant_key``, ``decided_at``."""
        rows = []
        store = self._reviews
        for key in store.iterkeys():
            value = store.get(key)
            if not (isinstance(key, tuple) and len(key) == 3 and isinstance(value, dict)):
                continue
            if variant_name is not None and key[2] != str(variant_name):
                continue
            rows.append(
                {
                    "image_sha256": key[1],
                    "variant": key[2],
                    "decision": value.get("decision", ""),
                    "image": value.get("image", ""),
                    "variant_key": value.get("variant_key", ""),
                    "decided_at": value.get("decided_at"),
                }
            )
        return sorted(rows, key=lambda row: row["decided_at"] or 0.0)

    # -- inspect and clear ---------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """Every live entry as a plain dict (``kind`` is ``"upload"`` or ``"output"``)."""
        rows: list[dict[str, Any]] = []
        for key in self._cache.iterkeys():
            value, expire_time = self._cache.get(key, expire_time=True)
            if value is None or not isinstance(key, tuple) or not key:
                continue
            if key[0] == _UPLOAD:
                _, identity, fingerprint, image_sha = key
                rows.append(
                    {
                        "kind": _UPLOAD,
                        "backend": identity,
                        "key_fingerprint": fingerprint,
                        "image_sha256": image_sha,
                        "variant": None,
                        "unique_filename": value,
                        "path": None,
                        "expires_at": expire_time,
                    }
                )
            elif key[0] == _OUTPUT:
                _, image_sha, variant_key, identity, fingerprint = key
                rows.append(
                    {
                        "kind": _OUTPUT,
                        "backend": identity,
                        "key_fingerprint": fingerprint,
                        "image_sha256": image_sha,
                        "variant": variant_key,
                        "unique_filename": value.get("unique_filename"),
                        "path": value.get("path"),
                        "expires_at": None,
                    }
                )
        return rows

    def inspect(self):
        """Every live entry as a :class:`pandas.DataFrame` (one row per entry)."""
        import pandas as pd

        columns = [
            "kind",
            "backend",
            "key_fingerprint",
            "image_sha256",
            "variant",
            "unique_filename",
            "path",
            "expires_at",
        ]
        return pd.DataFrame(self.entries(), columns=columns)

    def stats(self) -> dict[str, Any]:
        """Directory, size on disk, limit, entry counts by kind (review decisions too) and this
        object's counters."""
        kinds = Counter(entry["kind"] for entry in self.entries())
        return {
            "directory": str(self.directory),
            "volume_bytes": int(self._cache.volume()),
            "size_limit": int(self._cache.size_limit),
            "uploads": kinds[_UPLOAD],
            "outputs": kinds[_OUTPUT],
            "reviews": len(self._reviews),
            **{name: self.counters[name] for name in sorted(self.counters)},
        }

    def clear(self, kind: str | None = None) -> int:
        """Forget every entry, or only ``"upload"`` or ``"output"`` entries; returns the count.

        Output files themselves are left where they are. Review decisions are kept unless
        ``kind="review"`` (which forgets them all). Entries are tagged by kind, so clearing one
        kind is one query (entries of older versions were tagged when the cache was opened).
        """
        if kind == _REVIEW:
            return int(self._reviews.clear())
        if kind is None:
            marked = _TAGGED in self._cache
            removed = int(self._cache.clear()) - marked  # the marker is no entry
            self._cache.set(_TAGGED, True)
            return removed
        if kind not in (_UPLOAD, _OUTPUT):
            raise ValueError("kind must be 'upload', 'output', 'review' or None")
        return int(self._cache.evict(kind))

    def close(self) -> None:
        """Close the database handles (the cache reopens them on next use)."""
        self._cache.close()
        if self._review_store is not None:
            self._review_store.close()

    def __enter__(self) -> ReuseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_open: dict[str, ReuseCache] = {}
_open_lock = threading.Lock()


def default_cache(directory: str | os.PathLike[str] | None = None) -> ReuseCache:
    """The shared :class:`ReuseCache` of a directory (argument or ``BGCUT_CACHE_DIR``)."""
    path = str(Path(resolve_cache_dir(directory)).resolve())
    with _open_lock:
        cache = _open.get(path)
        if cache is None:
            cache = _open[path] = ReuseCache(path)
        return cache


def close_default_caches() -> int:
    """Close every cache :func:`default_cache` opened (returns how many); the next call opens a
    new one, for example after ``BGCUT_CACHE_DIR`` changed or its folder was deleted."""
    with _open_lock:
        caches = list(_open.values())
        _open.clear()
    for cache in caches:
        cache.close()
    return len(caches)
