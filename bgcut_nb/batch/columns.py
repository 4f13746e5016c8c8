"""The columns ``df.bgcut.process`` adds, and which column holds the images.

Shared by the accessors and the widgets, so neither imports the other.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import pandas as pd

from ..contract.errors import ImageColumnError

__all__ = [
    "UNIQUE_FILENAME_COL",
    "ERROR_COL",
    "IMAGE_SUFFIXES",
    "META_KEY",
    "frame_meta",
    "output_columns",
    "infer_image_col",
    "check_image_col",
    "ImageColumnError",
    "FLAGS_COL",
    "RISK_COL",
    "SIGNAL_COLUMNS",
    "signal_values",
]

UNIQUE_FILENAME_COL = "bgcut_unique_filename"
ERROR_COL = "bgcut_error"
FLAGS_COL = "bgcut_flags"
RISK_COL = "bgcut_risk"
#: The quality-signal columns and their dtypes: the flags raised (comma-separated names, ``""``
#: when none), the risk (larger: more likely a bad cut-out) and the measures behind them
#: (``bgcut_nb.engine.signals``), NaN where not measured.
SIGNAL_COLUMNS: dict[str, str] = {
    FLAGS_COL: "str",
    RISK_COL: "float64",
    "bgcut_soft_share": "float64",
    "bgcut_edge_touch": "float64",
    "bgcut_area": "float64",
    "bgcut_pieces": "float64",
    "bgcut_tier_gap": "float64",
}
#: Which variant's signals speak for a row: the highest quality tier measured, then the first.
_TIER_RANK = {"high": 0, "medium": 1, "low": 2}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Key in ``DataFrame.attrs`` under which a run records its settings and stats.
META_KEY = "bgcut"


def _looks_like_images(column: pd.Series) -> bool:
    values = column.dropna().head(200)
    if values.empty:
        return False
    if all(isinstance(v, (bytes, bytearray)) for v in values):
        return True
    if not all(isinstance(v, (str, os.PathLike)) for v in values):
        return False
    hits = sum(str(v).strip().lower().endswith(IMAGE_SUFFIXES) for v in values)
    return hits * 2 >= len(values)


def frame_meta(frame: pd.DataFrame) -> dict[str, Any]:
    """What the run that made ``frame`` recorded in ``frame.attrs`` (empty if none)."""
    meta = frame.attrs.get(META_KEY)
    return meta if isinstance(meta, dict) else {}


def output_columns(names: Iterable[str]) -> list[str]:
    """The columns a run with these variant names adds, in order."""
    columns = [UNIQUE_FILENAME_COL]
    for name in names:
        columns += [f"{name}_url", f"{name}_path"]
    return [*columns, ERROR_COL, *SIGNAL_COLUMNS]


def signal_values(
    variants: Iterable[Mapping[str, Any]], signals: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """One row's signal columns from its outputs' signals (by variant name): those of the
    highest-quality variant that was measured (first in order among equals); ``""`` and NaN
    when none was (JPEG outputs of the API, a failed row)."""
    measured = [
        (_TIER_RANK.get(v.get("quality", "high"), 3), i, signals[v["variant_name"]])
        for i, v in enumerate(variants)
        if signals.get(v["variant_name"])
    ]
    chosen: Mapping[str, Any] = min(measured, key=lambda m: m[:2])[2] if measured else {}
    values: dict[str, Any] = {
        FLAGS_COL: ",".join(chosen.get("flags", ())),
        RISK_COL: float(chosen.get("risk", math.nan)),
    }
    for column in list(SIGNAL_COLUMNS)[2:]:
        value = chosen.get(column.removeprefix("bgcut_"))
        values[column] = math.nan if value is None else float(value)
    return values


def infer_image_col(frame: pd.DataFrame) -> Hashable:
    """The column of image paths: the one recorded by a previous run, else the only column
    whose values look like image paths or bytes (in a frame without rows: its only column).
    :class:`ImageColumnError` when there is none or there are several."""
    meta = frame_meta(frame)
    if meta.get("image_col") in frame.columns:
        return meta["image_col"]
    produced = set(output_columns(v["variant_name"] for v in meta.get("variants", [])))
    candidates = [
        c
        for c in frame.columns
        if c not in produced
        and not (isinstance(c, str) and c.endswith(("_path", "_url")) and c != "image_path")
        and (frame.empty or _looks_like_images(frame[c]))
    ]
    if len(candidates) == 1:  # with no rows to look at, a frame's only column
        return candidates[0]
    raise ImageColumnError(frame.columns, candidates=[] if frame.empty else candidates)


def check_image_col(frame: pd.DataFrame, column: Hashable) -> Hashable:
    """``column`` if it is one of ``frame``'s columns, else :class:`ImageColumnError`."""
    if column not in frame.columns:
        raise ImageColumnError(frame.columns, missing=column)
    return column
