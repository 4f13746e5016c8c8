"""Exports for ML datasets: 8-bit PNG masks, COCO annotations (via pycocotools) and a manifest.

Masks come from an output's alpha (``alpha > 127`` is foreground, written 0/255), or from a
greyscale mask output as is thresholded the same way. COCO segmentations are run-length encoded
by ``pycocotools.mask.encode`` (area and bbox from ``mask.area`` / ``mask.toBbox``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ..contract.errors import MaskError
from ..core.atomic import atomic_write_bytes, atomic_write_text
from .canvas import open_image

__all__ = [
    "MaskError",
    "read_mask",
    "write_mask",
    "CocoImage",
    "coco_dataset",
    "write_coco",
    "sha256_file",
    "manifest_frame",
    "write_table",
    "REVIEW_COLUMNS",
]

#: Columns other work adds per row that the manifest carries along when present.
REVIEW_COLUMNS = ("bgcut_error", "bgcut_flags", "bgcut_risk", "bgcut_review")


def read_mask(source: str | os.PathLike[str] | bytes) -> np.ndarray:
    """A HxW uint8 mask, 255 where the output's alpha (or grey level) exceeds 127, else 0."""
    image, fmt = open_image(source, MaskError)
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        level = np.asarray(image.convert("RGBA"))[..., 3]
    elif image.mode in ("L", "1", "I", "I;16"):
        level = np.asarray(image.convert("L"))
    else:
        raise MaskError(
            f"no alpha channel in {fmt} {image.mode} output: export masks from a PNG "
            "or WebP variant without background_color"
        )
    return np.where(level > 127, 255, 0).astype(np.uint8)


def write_mask(mask: np.ndarray, dest: str | os.PathLike[str]) -> Path:
    """Write a 0/255 mask as an 8-bit greyscale PNG, atomically."""
    buf = io.BytesIO()
    Image.fromarray(mask, "L").save(buf, "PNG", optimize=True)
    return atomic_write_bytes(dest, buf.getvalue())


@dataclass
class CocoImage:
    """One row for the COCO file: its image's name and size and the mask annotating it."""

    file_name: str
    mask: np.ndarray
    row: Hashable | None = None
    size: tuple[int, int] | None = None  # (width, height) of the named image, if it differs


def _annotation(mask: np.ndarray, image_id: int, ann_id: int, category_id: int) -> dict | None:
    from pycocotools import mask as mask_util

    binary = np.asfortranarray((mask > 127).astype(np.uint8))
    if not binary.any():
        return None
    rle = mask_util.encode(binary)
    area = float(mask_util.area(rle))
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    rle["counts"] = rle["counts"].decode("ascii")
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": rle,
        "area": area,
        "bbox": bbox,
        "iscrowd": 0,
    }


def coco_dataset(
    images: Iterable[CocoImage], *, category: str = "foreground", description: str = ""
) -> dict[str, Any]:
    """A COCO instance-segmentation dict: one category, one RLE annotation per non-empty mask.

    A mask whose size differs from ``size`` (the named image's) is resized to it first
    (bilinear on 0/255, then threshold at 127). Image and annotation ids count from 1.
    """
    out_images, annotations = [], []
    for image_id, item in enumerate(images, start=1):
        mask = item.mask
        if item.size is not None and (mask.shape[1], mask.shape[0]) != tuple(item.size):
            resized = Image.fromarray(mask, "L").resize(item.size, Image.Resampling.BILINEAR)
            mask = np.where(np.asarray(resized) > 127, 255, 0).astype(np.uint8)
        entry = {
            "id": image_id,
            "file_name": item.file_name,
            "width": int(mask.shape[1]),
            "height": int(mask.shape[0]),
        }
        if item.row is not None:
            entry["bgcut_row"] = item.row if isinstance(item.row, (int, str)) else str(item.row)
        out_images.append(entry)
        ann = _annotation(mask, image_id, len(annotations) + 1, 1)
        if ann is not None:
            annotations.append(ann)
    return {
        "info": {"description": description or "bgcut-nb foreground masks"},
        "images": out_images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": category, "supercategory": category}],
    }


def write_coco(path: str | os.PathLike[str], dataset: Mapping[str, Any]) -> Path:
    """Write a COCO dict as JSON, atomically."""
    return atomic_write_text(path, json.dumps(dataset, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def sha256_file(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _describe(path: str) -> dict[str, Any]:
    try:
        info: dict[str, Any] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
    except OSError as exc:
        return {"missing": f"{type(exc).__name__}: {exc}"}
    try:
        with Image.open(path) as image:
            info.update(width=image.width, height=image.height, format=image.format)
    except (OSError, ValueError):
        pass
    return info


def manifest_frame(
    frame: pd.DataFrame, outputs: Mapping[str, tuple[Hashable, Hashable | None]]
) -> pd.DataFrame:
    """One row per output file of ``frame``: ``outputs`` maps an output's name to its path
    column and URL column (or ``None``). Each file is hashed (sha256) and measured; rows
    without a file are left out; ``bgcut_*`` review columns come along when present."""
    carried = [c for c in REVIEW_COLUMNS if c in frame.columns]
    records = []
    for label, row in frame.iterrows():
        for name, (path_col, url_col) in outputs.items():
            path = row.get(path_col)
            if not isinstance(path, (str, os.PathLike)) or not str(path):
                continue
            record = {"row": label, "output": name, "path": str(path)}
            record["url"] = row.get(url_col) if url_col is not None else None
            record.update(_describe(str(path)))
            record.update({c: row[c] for c in carried})
            records.append(record)
    columns = ["row", "output", "path", "url", "bytes", "sha256", "width", "height", "format"]
    columns += ["missing", *carried]
    out = pd.DataFrame.from_records(records, columns=columns)
    if out["missing"].isna().all():
        out = out.drop(columns="missing")
    return out


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as Parquet (``.parquet``/``.pq``, needs pyarrow) or CSV, atomically."""
    if Path(path).suffix.lower() in (".parquet", ".pq"):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return atomic_write_bytes(path, buf.getvalue())
    return atomic_write_bytes(path, frame.to_csv(index=False).encode("utf-8"))
