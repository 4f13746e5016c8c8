"""The canvas step the API lacks: a cut-out centred on a square pure-white canvas.

Runs on downloaded outputs (any backend): trim to the subject by alpha, scale so the subject's
longer side fills ``preset.fill`` of the canvas side (the rest is an even margin), paste onto
pure white RGB 255, flatten, encode in the preset's format, write atomically.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..contract.errors import CanvasError, ImageReadError
from ..core.atomic import atomic_write_bytes
from .presets import Preset, preset

__all__ = [
    "render_canvas",
    "write_canvas",
    "canvas_path",
    "subject_alpha",
    "open_image",
    "CanvasError",
    "ImageReadError",
]

#: Alpha above this (5%, as the engine's autocrop) counts as subject when trimming.
ALPHA_SUBJECT = 12
#: Without alpha (a flattened JPEG), pixels darker than this in any channel are the subject.
WHITE_SUBJECT = 245


def open_image(
    source: str | os.PathLike[str] | bytes, error: type[ImageReadError] = ImageReadError
) -> tuple[Image.Image, str | None]:
    """``(image, format)``: ``source`` (path or bytes) decoded, EXIF orientation applied;
    ``error`` (``"file not found: ..."`` / ``"unreadable image: ..."``) when it cannot be."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    except FileNotFoundError:
        raise error(f"file not found: {source}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise error(f"unreadable image: {type(exc).__name__}: {exc}") from None
    return ImageOps.exif_transpose(image), image.format


def subject_alpha(image: Image.Image) -> Image.Image:
    """The RGBA image of ``image``: its own alpha, or (no alpha) the non-white pixels opaque."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        return image.convert("RGBA")
    rgb = np.asarray(image.convert("RGB"))
    alpha = np.where((rgb < WHITE_SUBJECT).any(axis=-1), 255, 0).astype(np.uint8)
    out = image.convert("RGB")
    out.putalpha(Image.fromarray(alpha, "L"))
    return out


def render_canvas(source: str | os.PathLike[str] | bytes, spec: str | Preset) -> bytes:
    """The encoded canvas for one cut-out (path or bytes) under preset ``spec``."""
    spec = preset(spec)
    rgba = subject_alpha(open_image(source, CanvasError)[0])
    box = rgba.getchannel("A").point(lambda a: 255 if a > ALPHA_SUBJECT else 0).getbbox()
    if box is None:
        raise CanvasError("no subject: the cut-out is fully transparent")
    subject = rgba.crop(box)
    target = max(1, round(spec.fill * spec.size))
    scale = target / max(subject.size)
    size = (max(1, round(subject.width * scale)), max(1, round(subject.height * scale)))
    # resize on premultiplied alpha, so transparent pixels' colours do not bleed into the edge
    subject = subject.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")
    canvas = Image.new("RGB", (spec.size, spec.size), (255, 255, 255))
    offset = ((spec.size - size[0]) // 2, (spec.size - size[1]) // 2)
    canvas.paste(subject, offset, subject)
    buf = io.BytesIO()
    if spec.format == "JPEG":
        canvas.save(buf, "JPEG", quality=spec.quality, optimize=True)
    else:
        canvas.save(buf, spec.format)
    return buf.getvalue()


def canvas_path(
    out_dir: str | os.PathLike[str], cutout: str | os.PathLike[str], spec: Preset
) -> Path:
    """``out_dir/<preset>/<cut-out stem>-<hash>.<ext>``; the hash covers the canvas settings
    (the cut-out's own name already carries its image and rendering hash)."""
    digest = hashlib.sha256(spec.canvas_key().encode()).hexdigest()[:8]
    ext = {"JPEG": "jpg"}.get(spec.format, spec.format.lower())
    return Path(out_dir) / spec.name / f"{Path(cutout).stem}-{digest}.{ext}"


def write_canvas(
    cutout: str | os.PathLike[str], out_dir: str | os.PathLike[str], spec: str | Preset
) -> Path:
    """Render ``cutout``'s canvas into :func:`canvas_path` (atomically); an existing file of the
    same name (same cut-out, same settings) is kept."""
    spec = preset(spec)
    dest = canvas_path(out_dir, cutout, spec)
    if not dest.is_file():
        atomic_write_bytes(dest, render_canvas(cutout, spec))
    return dest
