"""``LocalBackend``: the v3 API's semantics in-process, over the embedded engine.

Uploads live under ``storage_dir/uploads/<unique_filename>/`` with the original bytes, their
metadata, the mattes computed so far (one per quality tier, reused by every later variant) and
the rendered outputs, addressed by ``file://`` URLs. Uploads expire after ``upload_ttl`` seconds
(2 hours by default, as on the real service) and then answer :class:`NotFoundError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
from PIL import Image

from ..contract.backend import Backend, ImageInput, ProcessResult, UploadResult, read_image_input
from ..contract.errors import NotFoundError
from ..contract.formats import sniff_format
from ..contract.pricing import DEFAULT_COSTS, CostTable
from ..contract.variants import Variant, parse_variants
from ..contract.wire import UPLOAD_LIFETIME
from ..core.atomic import atomic_write_bytes, atomic_write_text
from ..core.config import resolve_model_dir, resolve_storage_dir
from ..core.names import safe_filename
from ..engine.imaging import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_PROCESS_PIXELS,
    decode_image,
    inspect_image,
)
from ..engine.matting import QUALITIES, TIER_MODELS, Cutout, tier_models

__all__ = ["LocalBackend", "safe_filename"]

log = logging.getLogger(__name__)

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
_CHUNK = 1 << 16
#: Beside each rendering's outputs: the quality measures of the matte it was rendered from.
SIGNALS_FILE = "signals.json"
#: Images are matted at no fewer pixels than this (small images: always at full size).
_MIN_WORK_PIXELS = 1_000_000
#: An autocropped variant is rendered from a crop of the frame; matting the frame at this many
#: times its ``max_resolution`` gives full-size crops of subjects down to 1/16 of the frame.
_AUTOCROP_HEADROOM = 16


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
        engine: Any = None,
        providers: str | Sequence[str] | None = None,
        matte_memory: int = 8,
        matte_bytes: int = 256 * 1024 * 1024,
        models: Mapping[str, str] | None = None,
    ) -> None:
        self.storage_dir = resolve_storage_dir(storage_dir).resolve()
        self.model_dir = resolve_model_dir(model_dir)
        #: The registry model each quality tier runs (``models`` over ``TIER_MODELS``).
        self.tier_models = tier_models(models)
        self.upload_ttl = float(upload_ttl)
        self.max_pixels = max_pixels
        self.process_max_pixels = int(process_max_pixels)
        self.costs = costs
        self._engine = engine
        #: ONNX Runtime providers the engine asks for (default ``BGCUT_ONNX_PROVIDERS``, CPU).
        self.providers = providers
        self._engine_lock = threading.Lock()
        self._locks: dict[tuple[str, str, int], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._mattes: OrderedDict[tuple[str, str, int], Cutout] = OrderedDict()
        self._matte_memory = matte_memory
        self._matte_bytes = matte_bytes
        self._last_sweep = 0.0
        (self.storage_dir / "uploads").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBackend(storage_dir={str(self.storage_dir)!r})"

    def describe(self) -> str:
        """One line saying where the work runs: ONNX Runtime and its providers, best first."""
        return self.engine.describe()

    @property
    def identity(self) -> str:
        return f"local:{self.storage_dir}"

    @property
    def engine(self):
        """The engine (:class:`~bgcut_nb.engine.pipeline.LocalEngine`), loaded on first use."""
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    from ..engine.matting import Matting
                    from ..engine.pipeline import LocalEngine

                    matting = Matting(
                        self.model_dir, providers=self.providers, models=self.tier_models
                    )
                    self._engine = LocalEngine(self.model_dir, matting, providers=self.providers)
        return self._engine

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
        with self._locks_guard:
            for key in [k for k in self._mattes if k[0] == unique_filename]:
                del self._mattes[key]
            for key in [k for k in self._locks if k[0] == unique_filename]:
                del self._locks[key]

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
        budgets = self._budgets(parsed, meta["width"], meta["height"])
        paths = {v.variant_name: self._output_path(folder, v, budgets[v.quality]) for v in parsed}
        try:
            todo = [v for v in parsed if not self._reuse_output(paths[v.variant_name])]
            # the mattes the call still needs, each budget's tiers together (shared passes)
            decoded: dict[int, Image.Image] = {}  # the input at each budget, decoded once a call
            cutouts: dict[tuple[str, int], Cutout] = {}
            for budget in dict.fromkeys(budgets[v.quality] for v in todo):
                tiers = [v.quality for v in todo if budgets[v.quality] == budget]
                found = self._cutouts(unique_filename, meta, tiers, budget, decoded)
                cutouts.update({(quality, budget): cut for quality, cut in found.items()})
            measured: dict[tuple[str, int], str] = {}
            for variant in todo:
                path = paths[variant.variant_name]
                key = (variant.quality, budgets[variant.quality])
                if not self._reuse_output(path):  # an identical variant of this call made it
                    atomic_write_bytes(path, self.engine.render(cutouts[key], variant))
                if key not in measured:
                    partner = _partner_pass(folder, key, cutouts, self.tier_models)
                    measured[key] = _signals_json(cutouts[key], partner)
                atomic_write_text(path.parent / SIGNALS_FILE, measured[key])
        except FileNotFoundError:  # deleted meanwhile (expired and swept, or lost)
            raise NotFoundError() from None
        return ProcessResult(
            unique_filename=unique_filename,
            input_url=(folder / meta["input"]).as_uri(),
            output_urls={name: path.as_uri() for name, path in paths.items()},
        )

    def _budgets(self, variants: list[Variant], width: int, height: int) -> dict[str, int]:
        """One matte per tier at the size the call's largest output of it needs; tiers that
        stand on the same model pass (medium and high: u2net) share the largest of their
        sizes, so the image is decoded alike and the pass is run once for both."""
        need = {
            q: self.work_pixels([v for v in variants if v.quality == q], width, height)
            for q in {v.quality for v in variants}
        }
        if len(need) == 1:
            return need
        by_model: dict[str, list[str]] = {}
        for quality in need:  # by the tiers' models as named: no model is loaded to decide
            by_model.setdefault(self.tier_models[quality], []).append(quality)
        budgets = {}
        for tiers in by_model.values():
            sizes = [need[q] for q in tiers]
            shared = 0 if 0 in sizes else max(sizes)  # 0: the full image
            budgets.update(dict.fromkeys(tiers, shared))
        return budgets

    def work_pixels(self, variants: Iterable[Variant], width: int, height: int) -> int:
        """Pixels an image is decoded and matted at for these variants: what the largest
        output needs (an autocropped one 16x its budget), at least 1 MP, at most
        ``process_max_pixels``, never more than the image has (0: the full image)."""
        need = max(v.max_resolution * (_AUTOCROP_HEADROOM if v.autocrop else 1) for v in variants)
        need = min(self.process_max_pixels, max(_MIN_WORK_PIXELS, need))
        return 0 if need >= width * height else need

    def _model_tag(self, quality: str) -> str:
        """What marks a tier's stored mattes and outputs as another model's than the default
        (``""`` for the default mapping, so stored files keep their names)."""
        model = self.tier_models[quality]
        return "" if model == TIER_MODELS[quality] else f"~{model}"

    def _matte_name(self, quality: str, budget: int) -> str:
        """A stored matte's name: the tier, the pixel budget, a non-default model."""
        return _tier_name(quality, budget) + self._model_tag(quality)

    def _output_path(self, folder: Path, variant: Variant, budget: int) -> Path:
        """Where the variant's output is kept: one folder per rendering (everything but the
        name, the pixel budget it was matted at and a non-default model), the file named after
        the variant."""
        rendering = variant.cache_key() if not budget else f"{variant.cache_key()}@{budget}"
        rendering += self._model_tag(variant.quality)
        digest = hashlib.sha256(rendering.encode()).hexdigest()[:16]
        name = f"{safe_filename(variant.variant_name, 'variant')}.{variant.extension}"
        return folder / "outputs" / digest / name

    @staticmethod
    def _reuse_output(path: Path) -> bool:
        """Whether ``path`` exists now, made from the same rendering under another name if
        need be (copied); ``False``: it must be rendered."""
        if path.is_file():
            return True
        if not path.parent.is_dir():
            return False
        existing = sorted(path.parent.glob(f"*{path.suffix}"))
        if existing:
            atomic_write_bytes(path, existing[0].read_bytes())
        return bool(existing)

    def _lock_for(self, key: tuple[str, str, int]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _cutouts(
        self,
        unique_filename: str,
        meta: dict[str, Any],
        qualities: Iterable[str],
        budget: int,
        decoded: dict[int, Image.Image],
    ) -> dict[str, Cutout]:
        """The mattes for (image, each quality, pixel budget; 0: full size): from memory, from
        disk, or computed, the missing tiers together, on the image decoded at that budget
        (kept in ``decoded``). Each (image, tier, budget) is computed once at a time: its lock
        is held (all of them taken in one order, so calls asking for overlapping tiers cannot
        deadlock)."""
        keys = sorted({(unique_filename, quality, budget) for quality in qualities})
        with contextlib.ExitStack() as held:
            for key in keys:
                held.enter_context(self._lock_for(key))
            found: dict[str, Cutout] = {}
            with self._locks_guard:
                for key in keys:
                    if key in self._mattes:
                        self._mattes.move_to_end(key)
                        found[key[1]] = self._mattes[key]
            missing = [key[1] for key in keys if key[1] not in found]
            if not missing:
                return found
            folder = self._folder(unique_filename)
            if budget not in decoded:
                decoded[budget] = decode_image(
                    (folder / meta["input"]).read_bytes(),
                    max_pixels=self.max_pixels,
                    target_pixels=budget or None,
                )
            image = decoded[budget]
            for quality in missing:
                stored = self._load_matte(folder, self._matte_name(quality, budget), quality, image)
                if stored is not None:
                    found[quality] = stored
            computed = [q for q in missing if q not in found]
            if computed:
                for quality, cutout in self.engine.cutouts(image, computed).items():
                    self._save_matte(folder, self._matte_name(quality, budget), cutout)
                    found[quality] = cutout
            with self._locks_guard:
                for quality in missing:
                    self._mattes[unique_filename, quality, budget] = found[quality]
                # at most ``matte_memory`` mattes and ``matte_bytes`` of them (the newest stays)
                while len(self._mattes) > 1 and (
                    len(self._mattes) > self._matte_memory
                    or sum(_nbytes(c) for c in self._mattes.values()) > self._matte_bytes
                ):
                    self._mattes.popitem(last=False)
            return found

    @staticmethod
    def _save_matte(folder: Path, tier: str, cutout: Cutout) -> None:
        """Store what a matte is made of, for later calls: the raw model pass and, for the high
        tier, the colour correction (a cut-out that does not say is kept in memory only)."""
        if cutout.model_pass is not None:
            parts = {"model_pass": np.asarray(cutout.model_pass, dtype=np.float32)}
            if cutout.correction is not None:
                parts["correction"] = np.asarray(cutout.correction, dtype=np.int16)
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **parts)
            atomic_write_bytes(folder / f"matte-{tier}.npz", buffer.getvalue())

    def _load_matte(
        self, folder: Path, tier: str, quality: str, image: Image.Image
    ) -> Cutout | None:
        """The stored matte rebuilt, or ``None`` when there is none or it cannot be read (it is
        then computed again and replaced)."""
        path = folder / f"matte-{tier}.npz"
        try:
            with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as parts:
                prob = parts["model_pass"]
                correction = parts["correction"] if "correction" in parts else None
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("stored matte %s is unreadable (%s); computing it again", path, exc)
            return None
        return self.engine.cutout_from_pass(image, quality, prob, correction)

    def output_signals(self, url: str, path: Any, variant: Variant) -> dict[str, Any] | None:
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


def _partner_pass(
    folder: Path,
    key: tuple[str, int],
    cutouts: dict[tuple[str, int], Cutout],
    models: Mapping[str, str],
) -> np.ndarray | None:
    """The other model's raw pass on the same image, when at hand (this call's cut-outs or a
    stored matte; never run for the purpose): u2netp's for a u2net tier and the reverse."""
    quality = key[0]
    others = [q for q in QUALITIES if models[q] != models[quality]]
    for (other, _), cutout in cutouts.items():
        if other in others and cutout.model_pass is not None:
            return cutout.model_pass
    for other in others:
        for stored in sorted(folder.glob(f"matte-{other}*.npz")):
            try:
                with np.load(io.BytesIO(stored.read_bytes()), allow_pickle=False) as parts:
                    return parts["model_pass"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                continue
    return None


def _signals_json(cutout: Cutout, partner: np.ndarray | None) -> str:
    """The measures of a cut-out's matte as JSON (``null``: not measured), with the tier gap
    when the other model's pass is known and differs (it does not when a tier fell back)."""
    from ..engine.signals import measure, tier_gap

    gap = math.nan
    own = cutout.model_pass
    if partner is not None and own is not None and not np.array_equal(partner, own):
        gap = tier_gap(own, partner)
    measures = measure(cutout.alpha, gap=gap).to_dict()
    return json.dumps({k: None if math.isnan(v) else v for k, v in measures.items()})


def _tier_name(quality: str, budget: int) -> str:
    """A stored matte's name: the tier, and the pixel budget unless full size."""
    return quality if not budget else f"{quality}-{budget}"


def _nbytes(cutout: Cutout) -> int:
    return int(cutout.alpha.nbytes + cutout.foreground.nbytes)
