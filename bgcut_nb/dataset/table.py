"""Row-by-row glue between a DataFrame and this package: the canvas step over a processed
frame, ``check`` over an image column, mask and COCO exports over a variant's outputs.

A bad row never stops the others: its cause is recorded in the row (``..._failed``,
``..._mask_error``) or, for COCO, named in a :class:`ExportWarning`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, ImageOps

from ..contract.variants import Variant, parse_variants
from ..core.sources import image_source
from .canvas import CanvasError, write_canvas
from .compliance import check_image
from .exports import CocoImage, MaskError, coco_dataset, read_mask, write_coco, write_mask
from .presets import Preset, preset

__all__ = [
    "ExportWarning",
    "split_preset",
    "canvas_column",
    "check_column",
    "mask_columns",
    "coco_images",
    "export_coco",
    "output_columns_of",
]


class ExportWarning(UserWarning):
    """Rows left out of an export, each with its cause."""


def split_preset(
    variants: Any, spec: str | Preset | None
) -> tuple[Preset | None, list[Variant] | Any]:
    """``(preset, variants to render)``: a preset (given as ``preset=`` or as the variants
    themselves) adds its cut-out variant to any others; without one, ``variants`` is unchanged."""
    if isinstance(variants, Preset):
        variants, spec = None, variants if spec is None else spec
    if spec is None:
        if variants is None:
            raise ValueError("bgcut: pass variants, or preset='amazon-main' (or another preset)")
        return None, variants
    chosen = preset(spec)
    extra = parse_variants(variants) if variants is not None else []
    return chosen, [*extra, Variant.from_dict(chosen.variant())]


def canvas_column(
    cutouts: Iterable[Any], out_dir: str | os.PathLike[str], spec: Preset
) -> tuple[list[str | None], list[str]]:
    """The canvas file of each cut-out path (``None`` where there is none) and each row's
    error (``""`` where the canvas was made or the row had no cut-out to start from)."""
    paths: list[str | None] = []
    errors: list[str] = []
    for cutout in cutouts:
        if not isinstance(cutout, (str, os.PathLike)) or not str(cutout):
            paths.append(None)
            errors.append("")
            continue
        try:
            paths.append(str(write_canvas(cutout, out_dir, spec)))
            errors.append("")
        except CanvasError as exc:
            paths.append(None)
            errors.append(f"{spec.name} canvas: {exc}")
    return paths, errors


def check_column(
    column: pd.Series, spec: str | Preset, base_dir: str | os.PathLike[str] | None = None
) -> dict[str, list[Any]]:
    """``{<preset>_ok, <preset>_failed, <preset>_warnings}`` for a column of image paths or
    bytes; failed and warnings are ``"; "``-joined rule misses with measured values."""
    spec = preset(spec)
    ok, failed, advice = [], [], []
    for value in column.tolist():
        source = image_source(value, base_dir)
        if source is None:
            ok.append(False)
            failed.append(f"missing image path ({value!r})")
            advice.append("")
            continue
        report = check_image(source, spec)
        ok.append(report.ok)
        failed.append("; ".join(report.failed))
        advice.append("; ".join(report.warnings))
    return {f"{spec.name}_ok": ok, f"{spec.name}_failed": failed, f"{spec.name}_warnings": advice}


def _mask_name(path: str) -> str:
    return f"{Path(path).stem}.png"


def mask_columns(
    outputs: pd.Series, out_dir: str | os.PathLike[str]
) -> tuple[list[str | None], list[str]]:
    """Write each output's mask as ``out_dir/<output stem>.png`` (8-bit, 0/255); returns the
    mask paths (``None`` where none) and each row's error (``""`` when written or no output)."""
    paths: list[str | None] = []
    errors: list[str] = []
    for value in outputs.tolist():
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            paths.append(None)
            errors.append("")
            continue
        try:
            mask = read_mask(value)
        except MaskError as exc:
            paths.append(None)
            errors.append(str(exc))
            continue
        paths.append(str(write_mask(mask, Path(out_dir) / _mask_name(str(value)))))
        errors.append("")
    return paths, errors


def _original_size(source: Any) -> tuple[int, int] | None:
    try:
        with Image.open(source) as image:
            return ImageOps.exif_transpose(image).size
    except (OSError, ValueError):
        return None


def coco_images(
    frame: pd.DataFrame,
    output_col: Hashable,
    *,
    image_col: Hashable | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[CocoImage], list[str]]:
    """One :class:`CocoImage` per row with an output: named by the original image path as the
    image column gives it (sized to that image), or by the output when there is no readable
    original path; and the rows left out, each with its cause."""
    items, skipped = [], []
    for label, row in frame.iterrows():
        output = row[output_col]
        if not isinstance(output, (str, os.PathLike)) or not str(output):
            continue
        try:
            mask = read_mask(output)
        except MaskError as exc:
            skipped.append(f"row {label!r}: {exc}")
            continue
        original = row[image_col] if image_col is not None else None
        source = (
            image_source(original, base_dir) if isinstance(original, (str, os.PathLike)) else None
        )
        size = _original_size(source) if source is not None else None
        name = str(original) if size is not None else str(output)
        items.append(CocoImage(name, mask, row=label, size=size))
    return items, skipped


def export_coco(
    frame: pd.DataFrame,
    path: str | os.PathLike[str],
    output_col: Hashable,
    *,
    image_col: Hashable | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    category: str = "foreground",
) -> dict[str, Any]:
    """Write the COCO file for ``frame``'s outputs in ``output_col``; returns the dataset.
    Rows whose output holds no mask are left out with an :class:`ExportWarning`."""
    items, skipped = coco_images(frame, output_col, image_col=image_col, base_dir=base_dir)
    if skipped:
        warnings.warn(
            f"bgcut: {len(skipped)} rows left out of the COCO file: {'; '.join(skipped[:5])}",
            ExportWarning,
            stacklevel=3,
        )
    dataset = coco_dataset(items, category=category)
    write_coco(path, dataset)
    return dataset


def output_columns_of(
    frame: pd.DataFrame, variants: Iterable[str], presets: Iterable[str]
) -> Mapping[str, tuple[Hashable, Hashable | None]]:
    """The manifest's outputs: each variant's path and URL column, each preset's canvas path,
    and every mask column a mask export added."""
    outputs: dict[str, tuple[Hashable, Hashable | None]] = {}
    for name in variants:
        if f"{name}_path" in frame.columns:
            url = f"{name}_url" if f"{name}_url" in frame.columns else None
            outputs[name] = (f"{name}_path", url)
    for name in presets:
        if f"{name}_path" in frame.columns:
            outputs[name] = (f"{name}_path", None)
    for column in frame.columns:
        if isinstance(column, str) and column.endswith("_mask_path"):
            outputs[column[: -len("_path")]] = (column, None)
    return outputs
