"""The engine's side of a store of uploads: what one process call needs, and the work itself.

:class:`EngineSession` decides, for a call's variants, the size each quality tier is decoded and
matted at, which model each tier runs, and where its matte comes from (memory, the upload's
folder, or computed: :mod:`~bgcut_nb.engine.mattes`); it renders the variants and measures the
signals of the matte each was rendered from. ``LocalBackend`` asks it once per call
(:meth:`EngineSession.job`) and keeps only the contract's bookkeeping: uploads, their names,
output files and URLs.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..contract.variants import QUALITIES, Variant
from .imaging import DEFAULT_MAX_PIXELS, DEFAULT_PROCESS_PIXELS, decode_image
from .mattes import MatteMemory, matte_path, read_matte, stored_pass, write_matte
from .matting import TIER_MODELS, Cutout, tier_models
from .signals import measure, tier_gap

if TYPE_CHECKING:
    from .pipeline import LocalEngine

__all__ = [
    "EngineSession",
    "Job",
    "Rendering",
    "StoredImage",
    "MIN_WORK_PIXELS",
    "AUTOCROP_HEADROOM",
]

#: Images are matted at no fewer pixels than this (small images: always at full size).
MIN_WORK_PIXELS = 1_000_000
#: An autocropped variant is rendered from a crop of the frame; matting the frame at this many
#: times its ``max_resolution`` gives full-size crops of subjects down to 1/16 of the frame.
AUTOCROP_HEADROOM = 16


@dataclass(frozen=True)
class StoredImage:
    """An upload as the engine sees it: ``key`` names it among the session's mattes in memory,
    ``folder`` keeps its stored mattes, ``source`` is its file, ``width`` x ``height`` its
    oriented size."""

    key: str
    folder: Path
    source: Path
    width: int
    height: int


@dataclass(frozen=True)
class Rendering:
    """One rendering's encoded bytes, the variants that render to exactly them (names aside),
    and the signals of the matte it was rendered from (JSON, ``null``: not measured)."""

    variants: tuple[Variant, ...]
    data: bytes
    signals: str


class EngineSession:
    """Decode sizes, tier models and mattes for one store of uploads, over a
    :class:`~bgcut_nb.engine.pipeline.LocalEngine` (built on first use unless given).

    ``models`` chooses the tiers' models for the engine built here; a given engine's own
    choice (``engine.matting.tier_models``) is the session's. Each image is decoded at most at
    ``process_max_pixels``; inputs over ``max_pixels`` are refused.
    """

    def __init__(
        self,
        engine: LocalEngine | None = None,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        providers: str | Sequence[str] | None = None,
        models: Mapping[str, str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        process_max_pixels: int = DEFAULT_PROCESS_PIXELS,
        matte_memory: int = 8,
        matte_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        chosen = tier_models(models)
        if engine is not None:
            if models is not None and chosen != engine.matting.tier_models:
                raise ValueError(
                    "models= applies to the engine the session builds, not a given one"
                )
            chosen = dict(engine.matting.tier_models)
        #: The registry model each quality tier runs (before the default mapping's fallback).
        self.tier_models: dict[str, str] = chosen
        self.model_dir = model_dir
        self.providers = providers
        self.max_pixels = max_pixels
        self.process_max_pixels = int(process_max_pixels)
        self._engine = engine
        self._engine_lock = threading.Lock()
        self._memory = MatteMemory(matte_memory, matte_bytes)

    @property
    def engine(self) -> LocalEngine:
        """The engine (matting and rendering), built on first use."""
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    from .matting import Matting
                    from .pipeline import LocalEngine

                    matting = Matting(
                        self.model_dir, providers=self.providers, models=self.tier_models
                    )
                    self._engine = LocalEngine(self.model_dir, matting, providers=self.providers)
        return self._engine

    def describe(self) -> str:
        """One line saying where the work runs: ONNX Runtime and its providers, best first."""
        return self.engine.describe()

    # -- decisions (no image is read, no model loaded) -------------------------------------------

    def work_pixels(self, variants: Iterable[Variant], width: int, height: int) -> int:
        """Pixels an image is decoded and matted at for these variants: what the largest
        output needs (an autocropped one 16x its budget), at least 1 MP, at most
        ``process_max_pixels``, never more than the image has (0: the full image)."""
        need = max(v.max_resolution * (AUTOCROP_HEADROOM if v.autocrop else 1) for v in variants)
        need = min(self.process_max_pixels, max(MIN_WORK_PIXELS, need))
        return 0 if need >= width * height else need

    def decode_sizes(self, variants: Sequence[Variant], width: int, height: int) -> dict[str, int]:
        """Each tier's decode size (:meth:`work_pixels`) for a call: tiers that stand on the same
        model pass (medium and high: u2net) share the largest of their sizes, so the image is
        decoded alike and the pass is run once for both."""
        need: dict[str, int] = {
            q: self.work_pixels([v for v in variants if v.quality == q], width, height)
            for q in {v.quality for v in variants}
        }
        if len(need) == 1:
            return need
        by_model: dict[str, list[str]] = {}
        for quality in need:  # by the tiers' models as named: no model is loaded to decide
            by_model.setdefault(self.tier_models[quality], []).append(quality)
        sizes = {}
        for tiers in by_model.values():
            wanted = [need[q] for q in tiers]
            shared = 0 if 0 in wanted else max(wanted)  # 0: the full image
            sizes.update(dict.fromkeys(tiers, shared))
        return sizes

    def model_tag(self, quality: str) -> str:
        """What marks a tier's stored mattes and outputs as another model's than the default
        (``""`` for the default mapping, so stored files keep their names)."""
        model = self.tier_models[quality]
        return "" if model == TIER_MODELS[quality] else f"~{model}"

    # -- work --------------------------------------------------------------------------------------

    def job(self, image: StoredImage, variants: Sequence[Variant]) -> Job:
        """One process call's work on ``image`` for ``variants`` (decode sizes decided now)."""
        return Job(self, image, variants)

    def forget(self, key: str) -> None:
        """Drop an upload's mattes from memory (its folder is the caller's to delete)."""
        self._memory.forget(key)

    def cutouts(
        self,
        image: StoredImage,
        qualities: Iterable[str],
        pixels: int,
        decoded: dict[int, Image.Image],
    ) -> dict[str, Cutout]:
        """The mattes for (image, each quality, decode size; 0: full size): from memory, from
        disk, or computed, the missing tiers together, on the image decoded at that size (kept
        in ``decoded``). Each (image, tier, size) is made once at a time (its lock is held)."""
        keys = sorted({(image.key, quality, pixels) for quality in qualities})
        with self._memory.held(keys):
            found = {key[1]: cut for key, cut in self._memory.recall(keys).items()}
            missing = [key[1] for key in keys if key[1] not in found]
            if missing:
                picture = self._decoded(image, pixels, decoded)
                found.update(self._made(image.folder, missing, pixels, picture))
                self._memory.remember({(image.key, q, pixels): found[q] for q in missing})
            return found

    def _decoded(
        self, image: StoredImage, pixels: int, decoded: dict[int, Image.Image]
    ) -> Image.Image:
        if pixels not in decoded:
            decoded[pixels] = decode_image(
                image.source.read_bytes(), max_pixels=self.max_pixels, target_pixels=pixels or None
            )
        return decoded[pixels]

    def _made(
        self, folder: Path, qualities: list[str], pixels: int, picture: Image.Image
    ) -> dict[str, Cutout]:
        """The tiers' mattes from their stored files, the rest computed together (and stored)."""
        found: dict[str, Cutout] = {}
        for quality in qualities:
            parts = read_matte(matte_path(folder, quality, pixels, self.model_tag(quality)))
            if parts is not None:
                found[quality] = self.engine.cutout_from_pass(picture, quality, *parts)
        computed = [q for q in qualities if q not in found]
        if computed:
            for quality, cutout in self.engine.cutouts(picture, computed).items():
                write_matte(matte_path(folder, quality, pixels, self.model_tag(quality)), cutout)
                found[quality] = cutout
        return found


class Job:
    """One process call: the decode size of each tier it asks for, the renderings its variants
    are (:meth:`rendering`), and the work of making them (:meth:`render`)."""

    def __init__(self, session: EngineSession, image: StoredImage, variants: Sequence[Variant]):
        self.session = session
        self.image = image
        #: Each tier's decode size in pixels (0: the full image).
        self.sizes = session.decode_sizes(variants, image.width, image.height)
        self._decoded: dict[int, Image.Image] = {}  # the input at each size, decoded once

    def rendering(self, variant: Variant) -> str:
        """What the variant's output is (everything but its name, the size it is matted at,
        a non-default model): equal for variants whose outputs are the same bytes."""
        pixels = self.sizes[variant.quality]
        key = variant.cache_key() if not pixels else f"{variant.cache_key()}@{pixels}"
        return key + self.session.model_tag(variant.quality)

    def render(self, variants: Sequence[Variant]) -> Iterator[Rendering]:
        """Render ``variants`` (each distinct rendering once), their mattes made first, each
        size's missing tiers together."""
        cutouts = self._cutouts(variants)
        groups: dict[str, list[Variant]] = {}
        for variant in variants:
            groups.setdefault(self.rendering(variant), []).append(variant)
        measured: dict[tuple[str, int], str] = {}
        for group in groups.values():
            key = (group[0].quality, self.sizes[group[0].quality])
            data = self.session.engine.render(cutouts[key], group[0])
            if key not in measured:
                measured[key] = _signals_json(cutouts[key], self._partner(key[0], cutouts))
            yield Rendering(tuple(group), data, measured[key])

    def _cutouts(self, variants: Sequence[Variant]) -> dict[tuple[str, int], Cutout]:
        found: dict[tuple[str, int], Cutout] = {}
        for pixels in dict.fromkeys(self.sizes[v.quality] for v in variants):
            tiers = [v.quality for v in variants if self.sizes[v.quality] == pixels]
            made = self.session.cutouts(self.image, tiers, pixels, self._decoded)
            found.update({(quality, pixels): cut for quality, cut in made.items()})
        return found

    def _partner(self, quality: str, cutouts: dict[tuple[str, int], Cutout]) -> np.ndarray | None:
        """The other model's raw pass on the same image, when at hand (this call's cut-outs or a
        stored matte; never run for the purpose): u2netp's for a u2net tier and the reverse."""
        models = self.session.tier_models
        others = [q for q in QUALITIES if models[q] != models[quality]]
        for (other, _), cutout in cutouts.items():
            if other in others and cutout.model_pass is not None:
                return cutout.model_pass
        return stored_pass(self.image.folder, others)


def _signals_json(cutout: Cutout, partner: np.ndarray | None) -> str:
    """The measures of a cut-out's matte as JSON (``null``: not measured), with the tier gap
    when the other model's pass is known and differs (it does not when a tier fell back)."""
    gap = math.nan
    own = cutout.model_pass
    if partner is not None and own is not None and not np.array_equal(partner, own):
        gap = tier_gap(own, partner)
    measures = measure(cutout.alpha, gap=gap).to_dict()
    return json.dumps({k: None if math.isnan(v) else v for k, v in measures.items()})
