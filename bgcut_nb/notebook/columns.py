"""The columns ``df.bgcut.process`` adds, and which column holds the images.

Shared by the accessors and the widgets, so neither imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable
from typing import Any

import pandas as pd

__all__ = [
    "UNIQUE_FILENAME_COL",
    "ERROR_COL",
    "IMAGE_SUFFIXES",
    "META_KEY",
    "frame_meta",
    "output_columns",
    "infer_image_col",
]

UNIQUE_FILENAME_COL = "bgcut_unique_filename"
ERROR_COL = "bgcut_error"
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
    return [*columns, ERROR_COL]


def infer_image_col(frame: pd.DataFrame) -> Hashable:
    """The column of image paths: the one recorded by a previous run, else the only column
    whose values look like image paths or bytes."""
    meta = frame_meta(frame)
    if meta.get("image_col") in frame.columns:
        return meta["image_col"]
    produced = set(output_columns(v["variant_name"] for v in meta.get("variants", [])))
    candidates = [
        c
        for c in frame.columns
        if c not in produced
        and not (isinstance(c, str) and c.endswith(("_path", "_url")) and c != "image_path")
        and _looks_like_images(frame[c])
    ]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ValueError(
            "bgcut: no column looks like image paths (.png/.jpg/.jpeg/.webp); "
            "pass image_col='<column>'"
        )
    raise ValueError(
        f"bgcut: several columns look like image paths {candidates!r}; pass image_col='<column>'"
    )
