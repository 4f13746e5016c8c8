"""Inline previews of processed DataFrames with ipywidgets.

:func:`preview` shows one row at a time (a dropdown, or a slider for long frames): the original
and every variant side by side, transparency over a checkerboard, and each output's size,
format and file size. :func:`gallery` shows a thumbnail grid of one variant. Thumbnails are
small encoded images (``thumb_size`` px on the long side), never the full-size files. A file
that is missing or unreadable, too large to decode for a thumbnail (over
:data:`PREVIEW_MAX_PIXELS`, checked from its header), or an output a failed row never got, shows
as a :func:`placeholder` image with a note saying why, never as empty bytes (a broken-image
icon).
"""

from __future__ import annotations

import html
import io
import os
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
from PIL import Image

from ..batch.columns import ERROR_COL, infer_image_col
from ..contract.errors import ImageTooLarge
from ..contract.formats import MAX_INPUT_PIXELS, image_dimensions
from ..core.sources import image_source

__all__ = [
    "preview",
    "gallery",
    "thumbnail",
    "placeholder",
    "row_label",
    "ImageTooLarge",
    "ImageInfo",
    "CHECKER_LIGHT",
    "CHECKER_DARK",
    "PLACEHOLDER_FILL",
    "PREVIEW_MAX_PIXELS",
]

#: The two greys of the checkerboard drawn behind transparent pixels.
CHECKER_LIGHT = (255, 255, 255)
CHECKER_DARK = (204, 204, 204)
#: Side of one checkerboard square, in thumbnail pixels.
CHECKER_SQUARE = 8
#: Placeholder colours: the flat fill, its border and its text.
PLACEHOLDER_FILL = (242, 242, 242)
PLACEHOLDER_BORDER = (170, 170, 170)
PLACEHOLDER_TEXT = (90, 90, 90)
#: Colour of notes about missing files and failed rows: JupyterLab's error colour for the
#: theme in use (4.5:1 or better on its background in the light and the dark theme), with
#: a fallback for front-ends without JupyterLab's CSS variables.
NOTE_COLOUR = "var(--jp-error-color1, #b00020)"
#: Long side of preview thumbnails; gallery thumbnails default to smaller.
PREVIEW_SIZE = 256
GALLERY_SIZE = 160
#: Images are decoded for a thumbnail up to this many pixels (what processing accepts; a JPEG
#: counts at its reduced decoding scale), larger ones show a placeholder instead.
PREVIEW_MAX_PIXELS = MAX_INPUT_PIXELS
#: Rows above which :func:`preview` uses a slider instead of a dropdown.
DROPDOWN_LIMIT = 200
#: Height of a gallery caption or note line, in CSS pixels.
CAPTION_HEIGHT = 24
#: CSS for text kept on one line, cut with an ellipsis.
ONE_LINE = "overflow:hidden;text-overflow:ellipsis;white-space:nowrap"
#: Narrowest a preview card gets before the cards wrap onto a new line, in CSS pixels.
CARD_MIN_WIDTH = 96
#: Gap between preview cards and between gallery cells, in CSS pixels.
GAP = 12

#: Layout rules the ipywidgets ``Layout`` traits cannot express (a square image area, images
#: scaled down to fit it); every selector is scoped to the ``bgcut-*`` classes set here.
STYLE = f"""<style>
.bgcut-cards {{ flex-wrap: wrap; gap: {GAP}px; width: 100%; }}
.bgcut-card {{ flex: 1 1 0; min-width: {CARD_MIN_WIDTH}px; }}
.bgcut-area {{ width: 100%; aspect-ratio: 1 / 1; align-items: center; justify-content: center; }}
.bgcut-area > img {{ max-width: 100%; max-height: 100%; object-fit: contain; }}
.bgcut-grid {{ max-width: 100%; }}
</style>"""


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
    source: str | os.PathLike[str] | bytes,
    size: int = PREVIEW_SIZE,
    *,
    fmt: str = "png",
    background: str | None = None,
) -> tuple[bytes, ImageInfo]:
    """A small encoded thumbnail of an image file (or bytes) and facts about the full file.

    Transparent pixels are composited over a checkerboard, or over ``background`` (a colour
    such as ``"#00b140"``); EXIF orientation is applied. ``fmt`` is ``"png"`` (exact) or
    ``"jpeg"`` (smaller).
    """
    shown, info = thumbnails(source, size, fmt=fmt, backgrounds=[background])
    return shown[0], info


def thumbnails(
    source: str | os.PathLike[str] | bytes,
    size: int = PREVIEW_SIZE,
    *,
    fmt: str = "png",
    backgrounds: Sequence[str | None] = (None,),
) -> tuple[list[bytes], ImageInfo]:
    """:func:`thumbnail` over each of ``backgrounds`` (``None``: the checkerboard), from one
    read and one decode of ``source``."""
    from PIL import ImageOps

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with _open_header(data) as opened:
        info = ImageInfo(opened.width, opened.height, opened.format or "?", len(data))
        opened.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        if opened.width * opened.height > PREVIEW_MAX_PIXELS:  # still too many to decode
            raise ImageTooLarge(info)
        image = ImageOps.exif_transpose(opened)
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return [_composed(image, background, fmt) for background in backgrounds], info


def _composed(image: Image.Image, background: str | None, fmt: str) -> bytes:
    """``image`` over ``background`` (``None``: the checkerboard), encoded as ``fmt``."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        if background is None:
            under = _checkerboard(rgba.size).convert("RGBA")
        else:
            under = Image.new("RGBA", rgba.size, background)
        image = Image.alpha_composite(under, rgba).convert("RGB")
    else:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", optimize=True)
    else:
        image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _open_header(data: bytes) -> Image.Image:
    """``Image.open`` (the header only) without Pillow's decompression-bomb warning: the size
    is checked before any decoding instead; beyond Pillow's own hard limit, too large."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            width, height = image_dimensions(data) or (0, 0)
            raise ImageTooLarge(ImageInfo(width, height, "?", len(data))) from None


def placeholder(lines: Sequence[str], size: int = PREVIEW_SIZE) -> bytes:
    """A PNG, ``size`` x ``3/4 size`` px, saying ``lines`` (e.g. ``["file not found", name]``)
    in place of an image that cannot be shown; lines too long are cut with an ellipsis."""
    from PIL import ImageDraw, ImageFont

    width, height = size, max(24, size * 3 // 4)
    image = Image.new("RGB", (width, height), PLACEHOLDER_FILL)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, height - 1), outline=PLACEHOLDER_BORDER)
    font = ImageFont.load_default(size=max(9, size // 14))
    fitted = [_fit(draw, line, font, width - 12) for line in lines if line]
    line_height = font.getbbox("Ag")[3] + 4
    top = (height - line_height * len(fitted)) // 2
    for i, line in enumerate(fitted):
        draw.text(
            (width // 2, top + i * line_height), line, fill=PLACEHOLDER_TEXT, font=font, anchor="mt"
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _note(text: str, *, title: str | None = None) -> str:
    """HTML for a note about a missing or failed image (escaped; ``title`` shows on hover)."""
    tip = f' title="{html.escape(title, quote=True)}"' if title else ""
    return f'<span class="bgcut-note" style="color:{NOTE_COLOUR}"{tip}>{html.escape(text)}</span>'


def _short_paths(message: str, paths: Sequence[Any]) -> str:
    """``message`` with each of ``paths`` (absolute or relative) written as its file name."""
    for path in paths:
        if isinstance(path, (str, os.PathLike)) and str(path).strip():
            full = str(path)
            if os.sep in full or "/" in full:
                message = message.replace(full, Path(full).name)
    return message


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


def _file_name(value: Any) -> str:
    """The file name of an image path value; ``""`` for bytes, missing or blank values."""
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        return Path(value).name
    return ""


def row_label(label: Hashable, value: Any) -> str:
    """How a row is named in the preview's selector and the gallery: ``3 · chelsea.png``
    (the index and the image's file name), or the index alone when the image is bytes."""
    name = _file_name(value)
    return f"{label} · {name}" if name else str(label)


def _card(title: str, size: int) -> tuple[widgets.VBox, widgets.Image, widgets.HTML]:
    """A preview card: title, a square image area at most ``size`` px wide, one info line.

    Cards share the row's width equally (at most ``size`` px each) and shrink with it, so a
    narrow notebook scales the images down instead of clipping them; an image smaller than
    the area is centred in it, so card widths and info lines never move between rows.
    """
    image = widgets.Image(format="png")
    area = widgets.Box([image])
    area.add_class("bgcut-area")
    info = widgets.HTML(layout=widgets.Layout(width="100%", overflow="hidden"))
    box = widgets.VBox(
        [widgets.HTML(f"<b>{html.escape(title)}</b>"), area, info],
        layout=widgets.Layout(max_width=f"{size}px"),
    )
    box.add_class("bgcut-card")
    return box, image, info


def _fill(
    image: widgets.Image,
    info: widgets.HTML,
    source: Any,
    size: int,
    fmt: str,
    failed: str = "",
    flat: Sequence[tuple[widgets.Image, widgets.HTML, str]] = (),
) -> None:
    """Show ``source``'s thumbnail, or a placeholder and a short note saying why there is none.

    ``failed`` is the row's ``bgcut_error``, the reason an output is missing: the card says
    only ``failed`` (the viewer shows the message once, for the whole row). ``flat`` cards
    (image, info, colour) show the same source over a flat colour, from the same decode; where
    there is no thumbnail they show the same placeholder.
    """
    if source is None:
        if failed:
            shown, note = placeholder(["failed"], size), _note("failed", title=failed)
        else:
            shown, note = placeholder(["no image"], size), "<i>no image</i>"
        _show_placeholder(image, info, shown, note, flat)
        return
    name = "image bytes" if isinstance(source, bytes) else Path(source).name
    colours = [colour for _, _, colour in flat]
    try:
        data, facts = thumbnails(source, size, fmt=fmt, backgrounds=[None, *colours])
    except FileNotFoundError:
        shown = placeholder(["file not found", name], size)
        _show_placeholder(image, info, shown, _note("file not found", title=str(source)), flat)
    except ImageTooLarge as exc:
        dims = f"{exc.info.width}x{exc.info.height}"
        shown = placeholder(["too large to preview", dims], size)
        note = _note(f"too large to preview ({dims})", title=str(source))
        _show_placeholder(image, info, shown, note, flat)
    except Exception as exc:  # an unreadable file must not break the viewer
        reason = f"{type(exc).__name__}: {exc}"
        shown = placeholder(["cannot show", name], size)
        note = _note(f"cannot show: {type(exc).__name__}", title=reason)
        _show_placeholder(image, info, shown, note, flat)
    else:
        image.format = fmt
        image.value, info.value = data[0], html.escape(facts.describe())
        for (card, card_info, colour), composed in zip(flat, data[1:], strict=True):
            card.format, card.value = fmt, composed
            card_info.value = f"on {html.escape(colour)}"


def _show_placeholder(
    image: widgets.Image,
    info: widgets.HTML,
    shown: bytes,
    note: str,
    flat: Sequence[tuple[widgets.Image, widgets.HTML, str]] = (),
) -> None:
    image.format, image.value, info.value = "png", shown, note
    for card, card_info, _ in flat:
        card.format, card.value, card_info.value = "png", shown, ""


def _row_error(row: pd.Series) -> str:
    message = row.get(ERROR_COL, "")
    return message if isinstance(message, str) else ""


def _selector(names_of_rows: Sequence[str]) -> widgets.ValueWidget:
    """A dropdown of the rows' names, or for long frames a slider as wide as the notebook."""
    if len(names_of_rows) <= DROPDOWN_LIMIT:
        return widgets.Dropdown(
            options=[(text, pos) for pos, text in enumerate(names_of_rows)],
            value=0,
            description="row",
        )
    return widgets.IntSlider(
        value=0,
        min=0,
        max=len(names_of_rows) - 1,
        description="row",
        continuous_update=False,
        layout=widgets.Layout(width="100%"),  # its own line: one step is a few pixels
    )


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
    that run resolved relative image paths against. The viewer's ``selector`` picks the row
    (``viewer.selector.value = position``), ``cards`` holds the cards and ``error`` the row's
    error line.
    """
    if frame.empty:
        return widgets.VBox([widgets.HTML("<i>bgcut: nothing to preview (empty DataFrame)</i>")])
    col = infer_image_col(frame) if image_col is None else image_col
    names = list(variants) if variants is not None else _variant_names(frame)
    base = _base_dir(frame, base_dir)
    labels = list(frame.index)
    names_of_rows = [
        row_label(label, value) for label, value in zip(labels, frame[col], strict=True)
    ]
    selector = _selector(names_of_rows)
    current = widgets.HTML(layout=widgets.Layout(max_width="100%", overflow="hidden"))
    error = widgets.HTML(layout=widgets.Layout(width="100%"))
    cards = [_card("original", thumb_size)] + [_card(name, thumb_size) for name in names]

    def show(pos: int) -> None:
        row = frame.iloc[pos]
        name = _file_name(row[col])
        shown_as = (
            f"row {pos + 1} of {len(labels)} · index <code>{html.escape(str(labels[pos]))}</code>"
        )
        shown_as = f"{shown_as} · {html.escape(name)}" if name else shown_as
        current.value = f'<div style="{ONE_LINE}">{shown_as}</div>'
        sources = [image_source(row[col], base)]
        sources += [image_source(row.get(f"{name}_path"), None) for name in names]
        message = _row_error(row)
        for (_, image, info), source in zip(cards, sources, strict=True):
            _fill(image, info, source, thumb_size, "png", failed=message)
        shown = _short_paths(message, [row[col], sources[0]])
        error.value = _note(shown, title=message) if message else ""

    selector.observe(lambda change: show(int(change["new"])), names="value")
    show(0)
    row_of_cards = widgets.HBox([c[0] for c in cards])
    row_of_cards.add_class("bgcut-cards")
    header = widgets.HBox(
        [selector, current], layout=widgets.Layout(align_items="center", flex_flow="row wrap")
    )
    viewer = widgets.VBox([widgets.HTML(STYLE), header, row_of_cards, error])
    viewer.selector = selector  # for programmatic use: viewer.selector.value = position
    viewer.cards, viewer.error = row_of_cards, error
    return viewer


def _one_line(content: str, width: int, *, title: str | None = None) -> str:
    """``content`` (HTML) on one line ``width`` px wide, cut with an ellipsis when too long."""
    tip = f' title="{html.escape(title, quote=True)}"' if title else ""
    style = f"width:{width}px;{ONE_LINE}"
    return f'<div{tip} style="{style}">{content}</div>'


def gallery(
    frame: pd.DataFrame,
    variant: str | None = None,
    *,
    image_col: Hashable | None = None,
    columns: int = 4,
    thumb_size: int = GALLERY_SIZE,
    max_items: int = 48,
) -> widgets.VBox:
    """A grid of ``variant``'s outputs (default: the first variant), at most ``max_items``.

    Every cell has the same width and a fixed-height image area, and its caption (the row's
    index and file name, as in :func:`preview`) and note are one line each, cut with an
    ellipsis (the full text on hover), so captions line up across the grid.
    """
    names = _variant_names(frame)
    if variant is None:
        if not names:
            raise ValueError("bgcut: this DataFrame has no <variant>_path columns to show")
        variant = names[0]
    column = f"{variant}_path"
    if column not in frame.columns:
        raise KeyError(f"bgcut: no column {column!r}; variants here: {names}")
    if image_col is None:
        try:
            image_col = infer_image_col(frame)
        except ValueError:  # no original column: captions show the index alone
            image_col = None
    cell_width = thumb_size + 16
    line = widgets.Layout(width=f"{cell_width}px", height=f"{CAPTION_HEIGHT}px", margin="0")
    cells = []
    shown = frame.head(max_items)
    for (label, row), path in zip(shown.iterrows(), shown[column], strict=True):
        image = widgets.Image(
            layout=widgets.Layout(max_width=f"{thumb_size}px", max_height=f"{thumb_size}px")
        )
        info = widgets.HTML(layout=line)
        _fill(image, info, image_source(path, None), thumb_size, "jpeg", failed=_row_error(row))
        info.value = _one_line(info.value, cell_width)
        text = row_label(label, row[image_col] if image_col is not None else None)
        caption = widgets.HTML(_one_line(html.escape(text), cell_width, title=text), layout=line)
        area = widgets.Box(
            [image],
            layout=widgets.Layout(
                width=f"{cell_width}px",
                height=f"{thumb_size}px",
                align_items="center",
                justify_content="center",
            ),
        )
        cells.append(
            widgets.VBox([area, caption, info], layout=widgets.Layout(width=f"{cell_width}px"))
        )
    columns = max(1, columns)
    grid = widgets.GridBox(
        cells,
        layout=widgets.Layout(
            # as many columns as fit, at most ``columns``: a narrow notebook wraps, never clips
            grid_template_columns=f"repeat(auto-fill, {cell_width}px)",
            grid_gap=f"{GAP}px",
            width=f"{columns * cell_width + (columns - 1) * GAP}px",
        ),
    )
    grid.add_class("bgcut-grid")
    title = f"<b>{html.escape(variant)}</b>: {len(shown)} of {len(frame)} rows"
    return widgets.VBox([widgets.HTML(STYLE), widgets.HTML(title), grid])
