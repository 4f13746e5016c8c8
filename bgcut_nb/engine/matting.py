"""Alpha mattes and cut-outs from a photo: each quality tier is one named model pass.

Every tier stands on one U^2-Net pass at the model's native 320x320 input (as rembg runs it),
upsampled bilinearly to the photo's size. Refinement may only change alpha in a thin band along
that pass's outline (``alpha > 0.5``): the subject, its holes and its interior are the pass's.

``low``
    u2netp at 320x320, bilinear upsampling; the foreground is the photo itself.
``medium``
    u2net at 320x320, bilinear upsampling (rembg's default answer); the foreground is the photo.
``high``
    ``medium``'s u2net pass (computed once when one call asks for both tiers), its edge
    steepened inside a band of a few pixels along the outline (tapering to the pass's own
    alpha at the band's sides), and foreground colour estimation (blur fusion) so the old
    background's colour does not bleed into the edges on a new ``background_color``.

Each tier's model can be chosen from the registry (``Matting(models={"high":
"isnet-general-use"})``; the rest keep ``TIER_MODELS``). With the default mapping, ``medium``
and ``high`` fall back to u2netp (with a logged warning) when u2net cannot be had; a model chosen
explicitly that cannot be had is an error naming where to put it, never silently replaced.
Raw passes are remembered per image content (a small LRU), so asking one photo for several
tiers runs each distinct model pass once; :meth:`Matting.cutouts` asks for several tiers at
once and also upsamples each pass once. ``benchmarks/quality.py`` scores the tiers.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..contract.errors import BadRequestError, ModelUnavailableError
from ..contract.variants import QUALITIES
from .models import ensure_model, get_spec
from .refine import apply_correction, colour_correction, refine_band, resize_map
from .segmenter import Segmenter, shared_segmenter

if TYPE_CHECKING:
    from .imaging import ImageLike

__all__ = ["QUALITIES", "TIER_MODELS", "Cutout", "Matting", "matte", "tier_models"]

log = logging.getLogger(__name__)

#: The model pass each tier stands on (before any fallback).
TIER_MODELS: dict[str, str] = {"low": "u2netp", "medium": "u2net", "high": "u2net"}
#: High tier: half-width of the edge band in pixels per 320 px of the photo's short side.
BAND_PER_320 = 4
#: High tier: how much steeper the edge becomes at the outline (1 = the pass's own edge).
EDGE_STEEPNESS = 2.0


def tier_models(models: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each tier's model: ``TIER_MODELS`` with ``models``' choices over it (names checked)."""
    chosen = dict(models or {})
    unknown_tiers = sorted(set(chosen) - set(QUALITIES))
    if unknown_tiers:
        raise ValueError(f"unknown quality tier(s) {unknown_tiers}; tiers: {list(QUALITIES)}")
    for name in chosen.values():
        get_spec(name)  # ModelUnavailableError for an unknown model name
    return {**TIER_MODELS, **chosen}


@dataclass(frozen=True, eq=False)
class Cutout:
    """A cut-out: ``alpha`` float32 HxW in 0..1 and ``foreground`` uint8 HxWx3 to composite.

    What it was made from, when known (enough to make it again with no model,
    :meth:`Matting.cutout_from_pass`): ``model_pass``, the raw pass (float32 at the model's
    input size), and for the high tier ``correction``, its colour correction (int16, see
    :func:`~bgcut_nb.engine.refine.colour_correction`).
    """

    alpha: np.ndarray
    foreground: np.ndarray
    model_pass: np.ndarray | None = None
    correction: np.ndarray | None = None


def _check_quality(quality: str) -> str:
    if quality not in QUALITIES:
        raise BadRequestError(f"quality must be one of {', '.join(QUALITIES)}, got {quality!r}")
    return quality


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB HxWx3 array, got {getattr(rgb, 'shape', type(rgb))}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def _digest(rgb: np.ndarray) -> str:
    """A content key for a contiguous RGB array (its shape and bytes)."""
    h = hashlib.blake2b(repr(rgb.shape).encode(), digest_size=16)
    h.update(memoryview(rgb).cast("B"))  # type: ignore[arg-type]  # ndarray is a buffer
    return h.hexdigest()


def band_radius(width: int, height: int) -> int:
    """The high tier's edge band half-width in pixels for a photo of this size."""
    return max(2, round(BAND_PER_320 * min(width, height) / 320))


class Matting:
    """Cut-outs at each quality tier; loads each ONNX model once, safe to share between threads.

    ``memo`` is how many raw model passes are remembered (keyed by image content and model), so
    that tiers standing on the same pass share it; 0 turns the memo off. ``models`` chooses a
    registry model per tier (default ``TIER_MODELS``).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        threads: int | None = None,
        memo: int = 8,
        providers: str | Sequence[str] | None = None,
        models: Mapping[str, str] | None = None,
    ):
        self.model_dir = model_dir
        #: The model each tier runs (before the default mapping's u2netp fallback).
        self.tier_models = tier_models(models)
        self._chosen = frozenset(t for t, n in (models or {}).items() if n != TIER_MODELS[t])
        self.threads = threads
        #: ONNX Runtime providers asked for (``None``: ``BGCUT_ONNX_PROVIDERS``, else the CPU).
        self.providers = providers
        self._segmenters: dict[str, Segmenter] = {}
        self._lock = threading.Lock()
        self._warned_fallback = False
        self._memo: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._memo_size = memo
        self._pass_locks: dict[tuple[str, str], threading.Lock] = {}

    def segmenter(self, name: str) -> Segmenter:
        """The loaded model ``name`` (fetched into the model dir on first use)."""
        with self._lock:
            seg = self._segmenters.get(name)
            if seg is None:
                path = ensure_model(name, model_dir=self.model_dir)
                seg = shared_segmenter(
                    path, get_spec(name), threads=self.threads, providers=self.providers
                )
                self._segmenters[name] = seg
            return seg

    def model_for(self, quality: str) -> str:
        """The model the tier's pass runs: ``tier_models``, or u2netp when the default mapping's
        u2net is missing (a model chosen explicitly is never replaced)."""
        quality = _check_quality(quality)
        name = self.tier_models[quality]
        if name == "u2netp" or quality in self._chosen:
            return name
        try:
            self.segmenter(name)
        except ModelUnavailableError as exc:
            why = (quality, name, exc)
            if not self._warned_fallback:
                self._warned_fallback = True
                log.warning("%s quality falls back to u2netp: %s is unavailable: %s", *why)
            return "u2netp"
        return name

    def model_pass(self, rgb: np.ndarray, name: str) -> np.ndarray:
        """The raw pass of model ``name`` (float32 at its input size, 0..1), run once per image
        content."""
        rgb = _check_rgb(rgb)
        return self._model_pass(rgb, name, _digest(rgb) if self._memo_size > 0 else None)

    def _model_pass(self, rgb: np.ndarray, name: str, digest: str | None) -> np.ndarray:
        if digest is None:
            return self.segmenter(name).predict(rgb)
        key = (digest, name)
        with self._lock:
            lock = self._pass_locks.setdefault(key, threading.Lock())
        with lock:  # concurrent asks for the same pass wait for the first one
            with self._lock:
                if key in self._memo:
                    self._memo.move_to_end(key)
                    return self._memo[key]
            prob = self.segmenter(name).predict(rgb)
            prob.setflags(write=False)
            with self._lock:
                self._memo[key] = prob
                while len(self._memo) > self._memo_size:
                    self._memo.popitem(last=False)
                self._pass_locks.pop(key, None)
            return prob

    def clear_memo(self) -> None:
        """Forget the remembered passes (a benchmark's cold start)."""
        with self._lock:
            self._memo.clear()

    def plain(self, rgb: np.ndarray, name: str) -> np.ndarray:
        """Model ``name``'s pass upsampled bilinearly to the photo's size (what rembg returns)."""
        return _upsample(self.model_pass(rgb, name), rgb.shape)

    def cutout(self, rgb: np.ndarray, quality: str = "high") -> Cutout:
        """The cut-out of an RGB uint8 photo at ``quality`` (high, medium or low)."""
        return self.cutouts(rgb, [quality])[quality]

    def cutouts(self, rgb: np.ndarray, qualities: Iterable[str]) -> dict[str, Cutout]:
        """Cut-outs of one RGB uint8 photo at several tiers, sharing what they stand on: the
        photo is hashed once, and each distinct model pass is run and upsampled once (medium
        and high: one u2net pass and one upsampled matte)."""
        rgb = _check_rgb(rgb)
        tiers = list(dict.fromkeys(_check_quality(q) for q in qualities))
        digest = _digest(rgb) if self._memo_size > 0 else None
        plain: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        out = {}
        for quality in tiers:
            name = self.model_for(quality)
            if name not in plain:
                prob = self._model_pass(rgb, name, digest)
                plain[name] = (prob, _upsample(prob, rgb.shape))
            out[quality] = _tier_cutout(rgb, quality, *plain[name], None)
        return out

    def cutout_from_pass(
        self,
        rgb: np.ndarray,
        quality: str,
        prob: np.ndarray,
        correction: np.ndarray | None = None,
    ) -> Cutout:
        """The tier's cut-out of ``rgb`` from a raw pass already run on it (no model runs) and,
        for the high tier, its colour correction when known (else estimated now)."""
        rgb = _check_rgb(rgb)
        return _tier_cutout(
            rgb, _check_quality(quality), prob, _upsample(prob, rgb.shape), correction
        )


def _tier_cutout(
    rgb: np.ndarray,
    quality: str,
    prob: np.ndarray,
    plain: np.ndarray,
    correction: np.ndarray | None,
) -> Cutout:
    """The tier's cut-out from its pass and that pass upsampled to the photo (``plain``, not
    changed: low and medium return it as their alpha, high refines a copy)."""
    if quality != "high":
        return Cutout(alpha=plain, foreground=rgb, model_pass=prob)
    height, width = rgb.shape[:2]
    alpha = refine_band(plain, band_radius(width, height), EDGE_STEEPNESS)
    if correction is None:
        correction = colour_correction(rgb, alpha)
    foreground = apply_correction(rgb, correction)
    return Cutout(alpha=alpha, foreground=foreground, model_pass=prob, correction=correction)


def _upsample(prob: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.clip(resize_map(prob, (shape[1], shape[0])), 0.0, 1.0)


@functools.lru_cache(maxsize=4)
def _shared_matting(model_dir: str | None) -> Matting:
    return Matting(model_dir)


def release_shared_matting() -> None:
    """Drop the engines :func:`matte` keeps per model folder (and the passes they remember)."""
    _shared_matting.cache_clear()


def _load_rgb(image: ImageLike) -> np.ndarray:
    from .imaging import load_image

    return np.asarray(load_image(image).convert("RGB"))


def matte(
    image: ImageLike, quality: str = "high", *, model_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """The alpha matte (float32 HxW in 0..1, the image's size after EXIF orientation).

    ``image`` is a path, bytes, a binary file, a PIL image or an array; this is the same matte
    the renderer uses for ``quality``.
    """
    _check_quality(quality)
    rgb = _load_rgb(image)
    key = None if model_dir is None else str(model_dir)
    return _shared_matting(key).cutout(rgb, quality).alpha
