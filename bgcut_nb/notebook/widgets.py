"""Inline previews of processed DataFrames with ipywidgets.

:func:`preview` shows one row at a time (a dropdown, or a slider for long frames): the original
and every variant side by side, transparency over a checkerboard, and each output's size,
format and file size. :func:`gallery` shows a thumbnail grid of one variant. Thumbnails are
small encoded images (``thumb_size`` px on the long side), never the full-size files.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
from PIL import Image

from .columns import ERROR_COL, infer_image_col

__all__ = ["preview", "gallery", "thumbnail", "ImageInfo", "CHECKER_LIGHT", "CHECKER_DARK"]

#: The two greys of the checkerboard drawn behind transparent pixels.
CHECKER_LIGHT = (255, 255, 255)
CHECKER_DARK = (204, 204, 204)
#: Side of one checkerboard square, in thumbnail pixels.
CHECKER_SQUARE = 8
#: Long side of preview thumbnails; gallery thumbnails default to smaller.
PREVIEW_SIZE = 256
GALLERY_SIZE = 160
#: Rows above which :func:`preview` uses a slider instead of a dropdown.
DROPDOWN_LIMIT = 200


@dataclass(frozen=True)
class ImageInfo:
    """What a card says about a full-size file."""

    width: int
    height: int
    format: str
    bytes: int

    def describe(self) -> str:
        return f"{self.width}x{self.height} · {self.format} · {_human_bytes(self.bytes)}"


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _checkerboard(size: tuple[int, int]) -> Image.Image:
    width, height = size
    board = Image.new("RGB", size, CHECKER_LIGHT)
    dark = Image.new("RGB", (CHECKER_SQUARE, CHECKER_SQUARE), CHECKER_DARK)
    for y in range(0, height, CHECKER_SQUARE):
        for x in range((y // CHECKER_SQUARE + 1) % 2 * CHECKER_SQUARE, width, 2 * CHECKER_SQUARE):
            board.paste(dark, (x, y))
    return board


def thumbnail(
    source: str | os.PathLike[str] | bytes, size: int = PREVIEW_SIZE, *, fmt: str = "png"
) -> tuple[bytes, ImageInfo]:
    """A small encoded thumbnail of an image file (or bytes) and facts about the full file.

    Transparent pixels are composited over a checkerboard; EXIF orientation is applied.
    ``fmt`` is ``"png"`` (exact) or ``"jpeg"`` (smaller).
    """
    from PIL import ImageOps

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(data)) as opened:
        info = ImageInfo(opened.width, opened.height, opened.format or "?", len(data))
        opened.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        image = ImageOps.exif_transpose(opened)
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        board = _checkerboard(rgba.size).convert("RGBA")
        image = Image.alpha_composite(board, rgba).convert("RGB")
    else:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", optimize=True)
    else:
        image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue(), info


def _variant_names(frame: pd.DataFrame) -> list[str]:
    meta = frame.attrs.get("bgcut")
    if isinstance(meta, dict) and meta.get("variants"):
        names = [v["variant_name"] for v in meta["variants"]]
        if all(f"{n}_path" in frame.columns for n in names):
            return names
    found = []
    for column in frame.columns:
        if isinstance(column, str) and column.endswith("_path"):
            name = column[: -len("_path")]
            if f"{name}_url" in frame.columns:
                found.append(name)
    return found


def _base_dir(frame: pd.DataFrame, base_dir: str | os.PathLike[str] | None) -> Path | None:
    if base_dir is not None:
        return Path(base_dir).expanduser()
    meta = frame.attrs.get("bgcut")
    value = meta.get("base_dir") if isinstance(meta, dict) else None
    return Path(value) if value else None


def _source_path(value: Any, base: Path | None) -> str | os.PathLike[str] | bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        return None
    path = Path(value).expanduser()
    return base / path if base is not None and not path.is_absolute() else path


def _card(title: str, size: int) -> tuple[widgets.VBox, widgets.Image, widgets.HTML]:
    image = widgets.Image(format="png", layout=widgets.Layout(max_width=f"{size}px"))
    info = widgets.HTML()
    box = widgets.VBox(
        [widgets.HTML(f"<b>{html.escape(title)}</b>"), image, info],
        layout=widgets.Layout(margin="0 12px 0 0", align_items="flex-start"),
    )
    return box, image, info


def _fill(image: widgets.Image, info: widgets.HTML, source: Any, size: int, fmt: str) -> None:
    if source is None:
        image.value, info.value = b"", "<i>no image</i>"
        return
    try:
        data, facts = thumbnail(source, size, fmt=fmt)
    except FileNotFoundError:
        image.value, info.value = b"", f"<i>missing file: {html.escape(str(source))}</i>"
    except Exception as exc:  # an unreadable file must not break the viewer
        image.value = b""
        info.value = f"<i>cannot show: {html.escape(type(exc).__name__)}</i>"
    else:
        image.format = fmt
        image.value, info.value = data, html.escape(facts.describe())


def preview(
    frame: pd.DataFrame,
    *,
    image_col: Hashable | None = None,
    variants: Sequence[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    thumb_size: int = PREVIEW_SIZE,
) -> widgets.VBox:
    """Browse a processed DataFrame row by row: original and every variant side by side.

    ``variants`` defaults to those of the run that produced ``frame``; ``base_dir`` to the one
    that run resolved relative image paths against.
    """
    if frame.empty:
        return widgets.VBox([widgets.HTML("<i>bgcut: nothing to preview (empty DataFrame)</i>")])
    col = infer_image_col(frame) if image_col is None else image_col
    names = list(variants) if variants is not None else _variant_names(frame)
    base = _base_dir(frame, base_dir)
    labels = list(frame.index)

    if len(labels) <= DROPDOWN_LIMIT:
        selector = widgets.Dropdown(
            options=[(str(label), pos) for pos, label in enumerate(labels)],
            value=0,
            description="row",
        )
    else:
        selector = widgets.IntSlider(
            value=0, min=0, max=len(labels) - 1, description="row", continuous_update=False
        )
    row_label = widgets.HTML()
    error = widgets.HTML()
    cards = [_card("original", thumb_size)] + [_card(name, thumb_size) for name in names]

    def show(pos: int) -> None:
        row = frame.iloc[pos]
        row_label.value = f"index <code>{html.escape(str(labels[pos]))}</code>"
        sources = [_source_path(row[col], base)]
        sources += [_source_path(row.get(f"{name}_path"), None) for name in names]
        for (_, image, info), source in zip(cards, sources, strict=True):
            _fill(image, info, source, thumb_size, "png")
        message = row.get(ERROR_COL) if ERROR_COL in frame.columns else ""
        error.value = (
            f"<span style='color:#b00020'>{html.escape(str(message))}</span>"
            if isinstance(message, str) and message
            else ""
        )

    selector.observe(lambda change: show(int(change["new"])), names="value")
    show(0)
    viewer = widgets.VBox(
        [widgets.HBox([selector, row_label]), widgets.HBox([c[0] for c in cards]), error]
    )
    viewer.selector = selector  # for programmatic use: viewer.selector.value = position
    return viewer


def gallery(
    frame: pd.DataFrame,
    variant: str | None = None,
    *,
    columns: int = 4,
    thumb_size: int = GALLERY_SIZE,
    max_items: int = 48,
) -> widgets.VBox:
    """A grid of ``variant``'s outputs (default: the first variant), at most ``max_items``."""
    names = _variant_names(frame)
    if variant is None:
        if not names:
            raise ValueError("bgcut: this DataFrame has no <variant>_path columns to show")
        variant = names[0]
    column = f"{variant}_path"
    if column not in frame.columns:
        raise KeyError(f"bgcut: no column {column!r}; variants here: {names}")
    cells = []
    shown = frame.head(max_items)
    for label, path in zip(shown.index, shown[column], strict=True):
        image = widgets.Image(layout=widgets.Layout(max_width=f"{thumb_size}px"))
        info = widgets.HTML()
        _fill(image, info, _source_path(path, None), thumb_size, "jpeg")
        caption = widgets.HTML(f"<code>{html.escape(str(label))}</code>")
        cells.append(widgets.VBox([image, caption, info]))
    grid = widgets.GridBox(
        cells,
        layout=widgets.Layout(
            grid_template_columns=f"repeat({max(1, columns)}, {thumb_size + 24}px)",
            grid_gap="8px",
        ),
    )
    title = f"<b>{html.escape(variant)}</b>: {len(shown)} of {len(frame)} rows"
    return widgets.VBox([widgets.HTML(title), grid])
