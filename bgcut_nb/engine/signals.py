"""Quality signals: cheap measures of how trustworthy a cut-out is, from its alpha matte alone.

Every measure is taken on a working copy of the matte at most :data:`WORK_SIDE` pixels on its
long side (a few milliseconds, whatever the photo's size):

``soft_share``
    see-through: the share of the subject's interior (pixels of ``alpha > 0.1`` deeper than
    :data:`INTERIOR_DEPTH` of the short side from its outline) whose alpha is below 0.9. A
    solid subject scores ~0; a subject the model was unsure of is half transparent inside.
``edge_touch``
    the share of the frame's outermost ring of pixels that is subject (``alpha > 0.5``): a
    subject cut by the frame, or a background the model kept.
``area``
    the subject's share of the frame (``alpha > 0.5``): near 0, the model found nothing;
    near 1, it kept the background.
``pieces``
    separate parts of the subject (8-connected, ``alpha > 0.5``), counting only parts of at
    least :data:`MIN_PIECE` of the subject's area: a lost link or leftover background objects.
``tier_gap``
    disagreement of the two models (u2netp and u2net) on the same photo: the mean absolute
    difference of their mattes; NaN when only one model's pass is at hand.

:func:`flags` names the measures past their :class:`Thresholds`; :func:`risk` is one float
ranking cut-outs (larger: more likely bad): the sum of the :data:`RISK_FLAGS`' measures over
their thresholds, so at least 1 whenever one of those flags is raised. The defaults are the
thresholds ``benchmarks/flags.py`` chose on all its photos; it chooses them on half the
photos and reports the other half.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..contract.variants import Variant

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FLAG_NAMES",
    "RISK_FLAGS",
    "Signals",
    "Thresholds",
    "assess",
    "flags",
    "measure",
    "measure_encoded",
    "measure_output",
    "risk",
    "tier_gap",
    "working_matte",
]

#: Long side of the working copy every measure is taken on.
WORK_SIDE = 256
#: The interior of the subject starts this share of the working matte's short side inside it.
INTERIOR_DEPTH = 0.02
#: Parts of the subject smaller than this share of its area are specks, not pieces.
MIN_PIECE = 0.01
#: The flags whose measures add up to :func:`risk`. ``touches-edge`` and ``fragmented`` are
#: reported but left out: on the benchmark photos they did not rank bad cut-outs first
#: (``benchmarks/flags.py`` prints each measure's rank correlation with the error).
RISK_FLAGS = ("see-through", "tiny", "fills-frame", "tiers-disagree")
#: Areas below this count as this in ``risk`` (an empty matte ranks first, with a finite risk).
AREA_FLOOR = 1e-4
#: The flag names, in the order :func:`flags` lists them.
FLAG_NAMES = ("see-through", "touches-edge", "tiny", "fills-frame", "fragmented", "tiers-disagree")
_EIGHT = np.ones((3, 3), dtype=bool)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Signals:
    """The measures of one matte (NaN: not measured); see the module docstring."""

    soft_share: float = math.nan
    edge_touch: float = math.nan
    area: float = math.nan
    pieces: float = math.nan
    tier_gap: float = math.nan

    def to_dict(self) -> dict[str, float]:
        """Plain floats (JSON and cache friendly)."""
        return {name: float(value) for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Signals:
        """The inverse of :meth:`to_dict`; missing or ``None`` values are NaN."""
        data = data or {}
        return cls(
            **{
                f.name: math.nan if data.get(f.name) is None else float(data[f.name])
                for f in fields(cls)
            }
        )

    @property
    def measured(self) -> bool:
        """Whether the matte was measured at all (the area always is)."""
        return not math.isnan(self.area)


@dataclass(frozen=True)
class Thresholds:
    """Where each flag starts: a measure at or above its threshold (at or below, for
    ``tiny``)."""

    #: ``soft_share``: the share of the subject's interior that is half transparent
    see_through: float = 0.15
    #: ``edge_touch``: the share of the frame's border that is subject
    touches_edge: float = 0.5
    #: ``area`` at most this
    tiny: float = 0.02
    #: ``area`` at least this
    fills_frame: float = 0.95
    #: ``pieces``
    fragmented: float = 4
    #: ``tier_gap``: the mean difference of the two models' mattes
    tiers_disagree: float = 0.3


DEFAULT_THRESHOLDS = Thresholds()


def working_matte(alpha: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """``alpha`` (float 0..1 or uint8 0..255, HxW) as float32 0..1, at most ``side`` pixels on
    its long side: box-filtered from a grid of at least twice that many pixels."""
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise ValueError(f"expected an HxW matte, got shape {alpha.shape}")
    step = max(alpha.shape) // (2 * side)
    if step > 1:  # every step-th pixel first: a 16 MP matte costs what a 0.3 MP one does
        alpha = alpha[::step, ::step]
    if alpha.dtype == np.uint8:
        image = Image.fromarray(alpha, "L")
        scale = 255.0
    else:
        image = Image.fromarray(np.asarray(alpha, dtype=np.float32), "F")
        scale = 1.0
    height, width = alpha.shape
    if max(height, width) > side:
        shrink = side / max(height, width)
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        image = image.resize(size, Image.Resampling.BOX)
    work = np.asarray(image, dtype=np.float32)
    return np.clip(work / scale if scale != 1.0 else work, 0.0, 1.0)


def measure(alpha: np.ndarray, *, gap: float = math.nan) -> Signals:
    """The measures of one matte (``gap``: a :func:`tier_gap` taken elsewhere)."""
    from scipy import ndimage  # imported on first use: ``import bgcut_nb`` stays light

    work = working_matte(alpha)
    height, width = work.shape
    subject = work > 0.5
    area = float(subject.mean())

    ring = np.concatenate([work[0], work[-1], work[1:-1, 0], work[1:-1, -1]])
    edge_touch = float((ring > 0.5).mean())

    # distance to the nearest pixel outside alpha > 0.1; the frame's border is not an outline
    region = np.pad(work > 0.1, 1, mode="edge")
    depth = ndimage.distance_transform_edt(region)[1:-1, 1:-1]
    interior = depth > max(1.0, INTERIOR_DEPTH * min(height, width))
    inside = work[interior]
    soft_share = float((inside < 0.9).mean()) if inside.size else 0.0

    labels, count = ndimage.label(subject, structure=_EIGHT)
    if count:
        sizes = np.bincount(labels.ravel())[1:]
        pieces = int((sizes >= MIN_PIECE * sizes.sum()).sum())
    else:
        pieces = 0
    return Signals(
        soft_share=soft_share, edge_touch=edge_touch, area=area, pieces=float(pieces), tier_gap=gap
    )


def tier_gap(first: np.ndarray, second: np.ndarray) -> float:
    """Mean absolute difference of two mattes of the same photo (two models' passes), taken
    at the working size of the first (sizes may differ): the share of the frame they disagree
    on, soft disagreement counted in part."""
    a = working_matte(first)
    b = working_matte(second)
    if b.shape != a.shape:
        image = Image.fromarray(b, "F").resize((a.shape[1], a.shape[0]), Image.Resampling.BOX)
        b = np.asarray(image, dtype=np.float32)
    return float(np.abs(a - b).mean())


def _ratios(signals: Signals, thresholds: Thresholds) -> dict[str, float]:
    """Each flag's measure over its threshold (>= 1: raised); NaN where not measured."""
    t = thresholds
    area = signals.area
    return {
        "see-through": signals.soft_share / t.see_through,
        "touches-edge": signals.edge_touch / t.touches_edge,
        "tiny": _tiny_ratio(area, t.tiny),
        "fills-frame": _tiny_ratio(1.0 - area, 1.0 - t.fills_frame),
        "fragmented": signals.pieces / t.fragmented,
        "tiers-disagree": signals.tier_gap / t.tiers_disagree,
    }


def _tiny_ratio(area: float, threshold: float) -> float:
    """``threshold / area`` (>= 1: at most the threshold), finite: an empty matte counts as
    :data:`AREA_FLOOR`; 0 when the threshold is 0 (off)."""
    if math.isnan(area) or threshold <= 0:
        return area * 0.0  # NaN stays NaN
    return threshold / max(area, AREA_FLOOR)


def flags(signals: Signals, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[str]:
    """The names of the flags raised (:data:`FLAG_NAMES` order); empty when none or not
    measured."""
    return [name for name, ratio in _ratios(signals, thresholds).items() if ratio >= 1.0]


def risk(signals: Signals, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> float:
    """One ranking key, larger = more likely a bad cut-out: the sum of the :data:`RISK_FLAGS`'
    measure-to-threshold ratios (NaN ones left out), so at least 1 whenever one of them is
    raised. NaN when the matte was not measured."""
    if not signals.measured:
        return math.nan
    ratios = _ratios(signals, thresholds)
    return float(sum(r for name in RISK_FLAGS if not math.isnan(r := ratios[name])))


def measure_encoded(data: bytes) -> Signals | None:
    """The measures of an encoded image's alpha channel (a downloaded PNG or WebP cut-out);
    ``None`` when the image has no alpha to measure."""
    alpha = _png_alpha(data) if data[:8] == _PNG_SIGNATURE else None
    if alpha is None:
        with Image.open(io.BytesIO(data)) as image:
            if "A" not in image.getbands() and "transparency" not in image.info:
                return None
            alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    return measure(alpha)


def _png_alpha(data: bytes) -> np.ndarray | None:
    """The alpha of an RGBA or grey+alpha PNG through libpng (imagecodecs: about twice as fast
    as Pillow on a 12 MP cut-out); ``None`` for any other PNG (Pillow decides)."""
    import imagecodecs

    try:
        pixels = imagecodecs.png_decode(data)
    except Exception:  # imagecodecs raises its own error types; Pillow tries next
        return None
    if pixels.ndim != 3 or pixels.shape[2] not in (2, 4):
        return None
    alpha = pixels[..., -1]
    return alpha if alpha.dtype == np.uint8 else alpha.astype(np.float32) / 65535.0


def measure_output(path: str | os.PathLike[str], variant: Variant) -> Signals | None:
    """The measures of a finished output file from its alpha: ``None`` when the variant has no
    alpha (JPEG, a background colour) or is autocropped (its frame is not the photo's)."""
    if not variant.has_alpha or variant.autocrop:
        return None
    return measure_encoded(Path(path).read_bytes())


def assess(signals: Signals | None, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """What a batch records for one output: the measures, ``flags`` (a list of names) and
    ``risk``; an empty dict when there was nothing to measure."""
    if signals is None or not signals.measured:
        return {}
    return {
        **signals.to_dict(),
        "flags": flags(signals, thresholds),
        "risk": risk(signals, thresholds),
    }
