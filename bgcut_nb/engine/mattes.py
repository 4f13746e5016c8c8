"""Stored mattes: what a cut-out is made of, kept on disk beside its upload and in memory.

On disk, one ``matte-<tier>[-<pixels>][~<model>].npz`` per (tier, decode size, non-default
model) in the upload's folder: the raw model pass (float32) and, for the high tier, its colour
correction (int16); :meth:`LocalEngine.cutout_from_pass` rebuilds the cut-out from them with no
model. In memory, the newest cut-outs of a store (a count and a byte bound), each held by a
lock while it is made so that it is made once at a time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_write_bytes
from .matting import Cutout

__all__ = ["MatteKey", "MatteMemory", "matte_path", "read_matte", "stored_pass", "write_matte"]

log = logging.getLogger(__name__)

#: A matte in memory: (upload, tier, decode size in pixels; 0 for the full image).
MatteKey = tuple[str, str, int]
#: What stored mattes' file names start with.
_PREFIX = "matte-"
_ERRORS = (OSError, ValueError, KeyError, zipfile.BadZipFile)


def matte_path(folder: Path, quality: str, pixels: int, model_tag: str = "") -> Path:
    """Where a tier's matte at a decode size (0: full size) is stored; ``model_tag`` marks a
    non-default model (``""`` for the default, so stored files keep their names)."""
    size = "" if not pixels else f"-{pixels}"
    return folder / f"{_PREFIX}{quality}{size}{model_tag}.npz"


def write_matte(path: Path, cutout: Cutout) -> None:
    """Store what a matte is made of, for later calls: the raw model pass and, for the high
    tier, the colour correction (a cut-out that does not say is kept in memory only)."""
    if cutout.model_pass is None:
        return
    parts: dict[str, np.ndarray] = {"model_pass": np.asarray(cutout.model_pass, dtype=np.float32)}
    if cutout.correction is not None:
        parts["correction"] = np.asarray(cutout.correction, dtype=np.int16)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **parts)  # type: ignore[arg-type]  # numpy stubs: allow_pickle
    atomic_write_bytes(path, buffer.getvalue())


def _parts(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as parts:
        correction = parts["correction"] if "correction" in parts else None
        return parts["model_pass"], correction


def read_matte(path: Path) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A stored matte's raw pass and colour correction, or ``None`` when there is none or it
    cannot be read (it is then computed again and replaced)."""
    try:
        return _parts(path)
    except FileNotFoundError:
        return None
    except _ERRORS as exc:
        log.warning("stored matte %s is unreadable (%s); computing it again", path, exc)
        return None


def stored_pass(folder: Path, qualities: Iterable[str]) -> np.ndarray | None:
    """The raw pass of any readable stored matte of these tiers (at any size), else ``None``."""
    for quality in qualities:
        for path in sorted(folder.glob(f"{_PREFIX}{quality}*.npz")):
            try:
                with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as parts:
                    return parts["model_pass"]
            except _ERRORS:
                continue
    return None


def _nbytes(cutout: Cutout) -> int:
    return int(cutout.alpha.nbytes + cutout.foreground.nbytes)


class MatteMemory:
    """The newest cut-outs, at most ``count`` of them and ``max_bytes`` in all (the newest
    always stays), with one lock per key for making it; safe to share between threads."""

    def __init__(self, count: int = 8, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._count = count
        self._max_bytes = max_bytes
        self._cutouts: OrderedDict[MatteKey, Cutout] = OrderedDict()
        self._locks: dict[MatteKey, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def held(self, keys: list[MatteKey]) -> Iterator[None]:
        """Hold the keys' locks (taken in sorted order, so overlapping asks cannot deadlock)."""
        with contextlib.ExitStack() as stack:
            for key in sorted(keys):
                with self._guard:
                    lock = self._locks.setdefault(key, threading.Lock())
                stack.enter_context(lock)
            yield

    def recall(self, keys: Iterable[MatteKey]) -> dict[MatteKey, Cutout]:
        """The cut-outs in memory among ``keys`` (each marked as the newest)."""
        found = {}
        with self._guard:
            for key in keys:
                if key in self._cutouts:
                    self._cutouts.move_to_end(key)
                    found[key] = self._cutouts[key]
        return found

    def remember(self, cutouts: dict[MatteKey, Cutout]) -> None:
        """Keep ``cutouts``, dropping the oldest beyond the count and byte bounds."""
        with self._guard:
            self._cutouts.update(cutouts)
            while len(self._cutouts) > 1 and (
                len(self._cutouts) > self._count
                or sum(_nbytes(c) for c in self._cutouts.values()) > self._max_bytes
            ):
                self._cutouts.popitem(last=False)

    def forget(self, upload: str) -> None:
        """Drop an upload's cut-outs and locks."""
        with self._guard:
            for key in [k for k in self._cutouts if k[0] == upload]:
                del self._cutouts[key]
            for key in [k for k in self._locks if k[0] == upload]:
                del self._locks[key]
