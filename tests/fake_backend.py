"""A fake in-memory :class:`~bgcut_nb.contract.backend.Backend` for batch tests that need no model.

It keeps the contract exactly (upload, process into every variant in one call, fetch outputs,
the API's errors) with uploads and outputs in dictionaries. Its matte is deterministic and
needs no model: a pixel is foreground when it differs from the image's top-left corner colour
by more than :data:`THRESHOLD` in some channel (the test photos are a disc on a light
background). Outputs are rendered by the engine's own renderer
(:func:`bgcut_nb.engine.render.render_variant`), so formats, sizes and alpha are real.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from bgcut_nb.contract.backend import (
    Backend,
    ImageInput,
    ProcessResult,
    UploadResult,
    read_image_input,
)
from bgcut_nb.contract.errors import InvalidImageError, NotFoundError
from bgcut_nb.contract.formats import sniff_format
from bgcut_nb.contract.variants import Variant, parse_variants
from bgcut_nb.engine.render import render_variant

__all__ = ["FakeBackend", "THRESHOLD"]

#: A channel difference from the corner colour above this makes a pixel foreground.
THRESHOLD = 40


@dataclass
class _Cutout:
    foreground: np.ndarray
    alpha: np.ndarray


@dataclass
class _Store:
    """What a fake service remembers; backends made with ``FakeBackend(share=...)`` share it."""

    uploads: dict[str, bytes] = field(default_factory=dict)
    outputs: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Iterator[int] = field(default_factory=itertools.count)


class FakeBackend(Backend):
    """An in-process backend without a model (see the module docstring).

    ``name`` makes the identity (cache entries are per identity); ``share`` another fake's
    uploads and outputs, as a second client of the same service. ``counts`` counts uploads and
    processing calls.
    """

    is_local = True

    def __init__(self, name: str = "fake", *, share: FakeBackend | None = None) -> None:
        self._name = name
        self._store = share._store if share is not None else _Store()
        self.counts = {"upload": 0, "process": 0}

    @property
    def identity(self) -> str:
        return f"fake:{self._name}"

    def upload_image(self, image: ImageInput) -> UploadResult:
        data, _ = read_image_input(image)
        if sniff_format(data) is None:
            raise InvalidImageError()
        with self._store.lock:
            unique_filename = f"upload-{next(self._store.ids)}"
            self._store.uploads[unique_filename] = data
            self.counts["upload"] += 1
        return UploadResult(unique_filename)

    def forget_uploads(self) -> None:
        """The service forgets every upload (as when they expire): they answer 404 from now."""
        with self._store.lock:
            self._store.uploads.clear()

    def process_image(
        self, unique_filename: str, variants: Iterable[Variant | Mapping[str, Any]]
    ) -> ProcessResult:
        parsed = parse_variants(variants)
        with self._store.lock:
            data = self._store.uploads.get(unique_filename)
            self.counts["process"] += 1
        if data is None:
            raise NotFoundError()
        cutout = _matte(data)
        urls = {}
        for variant in parsed:
            rendered = render_variant(cutout, variant)
            with self._store.lock:
                url = f"fake://outputs/{next(self._store.ids)}.{variant.extension}"
                self._store.outputs[url] = rendered
            urls[variant.variant_name] = url
        return ProcessResult(unique_filename, f"fake://uploads/{unique_filename}", urls)

    def iter_fetch(self, url: str) -> Iterator[bytes]:
        with self._store.lock:
            data = self._store.outputs.get(url)
        if data is None:
            raise NotFoundError("Output not found or has expired.")
        yield data


def _matte(data: bytes) -> _Cutout:
    """The image's colours and a 0/1 matte: pixels unlike the top-left corner's colour."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except Exception:  # noqa: BLE001 - any decoding failure is the API's 400
        raise InvalidImageError() from None
    corner = rgb[0, 0].astype(np.int16)
    differs = np.abs(rgb.astype(np.int16) - corner).max(axis=-1) > THRESHOLD
    return _Cutout(foreground=rgb, alpha=differs.astype(np.float32))
