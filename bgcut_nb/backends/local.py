"""``LocalBackend``: the v3 API's semantics in-process, over the embedded engine.

Uploads live under ``storage_dir/uploads/<unique_filename>/`` with the original bytes, their
metadata, the mattes computed so far (one per quality tier, reused by every later variant) and
the rendered outputs, addressed by ``file://`` URLs. Uploads expire after ``upload_ttl`` seconds
(2 hours by default, as on the real service) and then answer :class:`NotFoundError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..contract.backend import Backend, ImageInput, ProcessResult, UploadResult, read_image_input
from ..contract.errors import NotFoundError
from ..contract.formats import sniff_format
from ..contract.pricing import DEFAULT_COSTS, CostTable
from ..contract.variants import Variant, parse_variants
from ..contract.wire import UPLOAD_LIFETIME
from ..core.atomic import atomic_write_bytes, atomic_write_text
from ..core.config import resolve_model_dir, resolve_storage_dir
from ..core.names import safe_filename
from ..engine.imaging import DEFAULT_MAX_PIXELS, DEFAULT_PROCESS_PIXELS, inspect_image
from ..engine.session import EngineSession, StoredImage

if TYPE_CHECKING:
    from ..engine.pipeline import LocalEngine

__all__ = ["LocalBackend"]

log = logging.getLogger(__name__)

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
_CHUNK = 1 << 16
#: Beside each rendering's outputs: the quality measures of the matte it was rendered from.
SIGNALS_FILE = "signals.json"


class LocalBackend(Backend):
    """The embedded local engine behind the :class:`~bgcut_nb.contract.backend.Backend` contract."""

    is_local = True

    def __init__(
        self,
        storage_dir: str | os.PathLike[str] | None = None,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        upload_ttl: float = UPLOAD_LIFETIME,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        process_max_pixels: int = DEFAULT_PROCESS_PIXELS,
        costs: CostTable = DEFAULT_COSTS,
        engine: LocalEngine | None = None,
        providers: str | Sequence[str] | None = None,
        matte_memory: int = 8,
        matte_bytes: int = 256 * 1024 * 1024,
        models: Mapping[str, str] | None = None,
    ) -> None:
        self.storage_dir = resolve_storage_dir(storage_dir).resolve()
        self.model_dir = resolve_model_dir(model_dir)
        self.upload_ttl = float(upload_ttl)
        self.max_pixels = max_pixels
        self.costs = costs
        #: The engine's side of this store: decode sizes, tier models, mattes, renderings.
        self.session = EngineSession(
            engine,
            model_dir=self.model_dir,
            providers=providers,
            models=models,
            max_pixels=max_pixels,
            process_max_pixels=process_max_pixels,
            matte_memory=matte_memory,
            matte_bytes=matte_bytes,
        )
        self._last_sweep = 0.0
        (self.storage_dir / "uploads").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBackend(storage_dir={str(self.storage_dir)!r})"

    def describe(self) -> str:
        """One line saying where the work runs: ONNX Runtime and its providers, best first."""
        return self.session.describe()

    @property
    def identity(self) -> str:
        return f"local:{self.storage_dir}"

    @property
    def engine(self) -> LocalEngine:
        """The engine (:class:`~bgcut_nb.engine.pipeline.LocalEngine`), loaded on first use."""
        return self.session.engine

    @property
    def tier_models(self) -> dict[str, str]:
        """The registry model each quality tier runs (the session's)."""
        return self.session.tier_models

    @property
    def providers(self) -> str | Sequence[str] | None:
        """ONNX Runtime providers the engine asks for (default ``BGCUT_ONNX_PROVIDERS``, CPU)."""
        return self.session.providers

    @property
    def process_max_pixels(self) -> int:
        """Largest size an image is decoded and matted at, in pixels (the session's)."""
        return self.session.process_max_pixels

    # -- uploads -------------------------------------------------------------------------------

    def upload_image(self, image: ImageInput) -> UploadResult:
        data, filename = read_image_input(image)
        width, height = inspect_image(data, max_pixels=self.max_pixels)  # header, no full decode
        unique_filename = str(uuid.uuid4())
        folder = self._folder(unique_filename)
        ext = sniff_format(data) or "img"
        atomic_write_bytes(folder / f"input.{ext}", data)
        meta = {
            "created": time.time(),
            "input": f"input.{ext}",
            "filename": filename,
            "width": width,
            "height": height,
        }
        atomic_write_text(folder / "meta.json", json.dumps(meta))
        self._sweep_expired()
        return UploadResult(unique_filename)

    def _folder(self, unique_filename: str) -> Path:
        return self.storage_dir / "uploads" / unique_filename

    def _meta(self, unique_filename: str) -> dict[str, Any]:
        """Metadata of a live upload; :class:`NotFoundError` if unknown or expired."""
        if not isinstance(unique_filename, str) or not _UUID.match(unique_filename):
            raise NotFoundError()
        folder = self._folder(unique_filename)
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            raise NotFoundError() from None
        if time.time() - meta["created"] > self.upload_ttl:
            self._forget(unique_filename)
            raise NotFoundError()
        return meta

    def _forget(self, unique_filename: str) -> None:
        shutil.rmtree(self._folder(unique_filename), ignore_errors=True)
        self.session.forget(unique_filename)

    def forget_upload(self, unique_filename: str) -> None:
        """Delete an upload with its mattes and outputs now (the server's sweeper calls this)."""
        if isinstance(unique_filename, str) and _UUID.match(unique_filename):
            self._forget(unique_filename)

    def sweep_expired(self) -> None:
        """Delete every expired upload (with its outputs) now."""
        self._sweep_expired(every=0.0)

    def _sweep_expired(self, every: float = 60.0) -> None:
        now = time.time()
        if now - self._last_sweep < every:
            return
        self._last_sweep = now
        for folder in (self.storage_dir / "uploads").iterdir():
            try:
                created = json.loads((folder / "meta.json").read_text())["created"]
            except (OSError, ValueError, KeyError):
                continue
            if now - created > self.upload_ttl:
                self._forget(folder.name)

    # -- processing ----------------------------------------------------------------------------

    def process_image(
        self, unique_filename: str, variants: Iterable[Variant | Mapping[str, Any]]
    ) -> ProcessResult:
        parsed = parse_variants(variants)
        meta = self._meta(unique_filename)
        folder = self._folder(unique_filename)
        image = StoredImage(
            unique_filename, folder, folder / meta["input"], meta["width"], meta["height"]
        )
        job = self.session.job(image, parsed)
        paths = {v.variant_name: self._output_path(folder, v, job.rendering(v)) for v in parsed}
        try:
            todo = [v for v in parsed if not _reuse_output(paths[v.variant_name])]
            for rendering in job.render(todo):
                for variant in rendering.variants:
                    atomic_write_bytes(paths[variant.variant_name], rendering.data)
                first = paths[rendering.variants[0].variant_name]
                atomic_write_text(first.parent / SIGNALS_FILE, rendering.signals)
        except FileNotFoundError:  # deleted meanwhile (expired and swept, or lost)
            raise NotFoundError() from None
        return ProcessResult(
            unique_filename=unique_filename,
            input_url=image.source.as_uri(),
            output_urls={name: path.as_uri() for name, path in paths.items()},
        )

    @staticmethod
    def _output_path(folder: Path, variant: Variant, rendering: str) -> Path:
        """Where the variant's output is kept: one folder per rendering
        (:meth:`~bgcut_nb.engine.session.Job.rendering`), the file named after the variant."""
        digest = hashlib.sha256(rendering.encode()).hexdigest()[:16]
        name = f"{safe_filename(variant.variant_name, 'variant')}.{variant.extension}"
        return folder / "outputs" / digest / name

    def output_signals(
        self, url: str, path: str | os.PathLike[str], variant: Variant
    ) -> dict[str, Any] | None:
        """Quality signals of an output, measured on the matte it was rendered from when it was
        rendered (``signals.json`` beside it), else on the file's alpha."""
        from ..engine.signals import Signals, assess, measure_output

        try:
            stored = json.loads((self._path_of(url).parent / SIGNALS_FILE).read_text())
        except (NotFoundError, OSError, ValueError):  # expired, or made before signals were kept
            return assess(measure_output(path, variant))
        return assess(Signals.from_dict(stored))

    # -- fetching ------------------------------------------------------------------------------

    def _path_of(self, url: str) -> Path:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise NotFoundError(f"Not a local output URL: {url}")
        path = Path(url2pathname(parsed.path)).resolve()
        if not path.is_relative_to(self.storage_dir) or not path.is_file():
            raise NotFoundError("Output not found or has expired.")
        return path

    def iter_fetch(self, url: str) -> Iterator[bytes]:
        path = self._path_of(url)
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk


def _reuse_output(path: Path) -> bool:
    """Whether ``path`` exists now, made from the same rendering under another name if need be
    (copied); ``False``: it must be rendered."""
    if path.is_file():
        return True
    if not path.parent.is_dir():
        return False
    existing = sorted(path.parent.glob(f"*{path.suffix}"))
    if existing:
        atomic_write_bytes(path, existing[0].read_bytes())
    return bool(existing)
