"""Image ingest: decode PNG/JPEG/WebP by content, apply EXIF orientation, normalise to sRGB.

Everything the engine works on passes through :func:`decode_image` (uploaded bytes) or
:func:`load_image` (anything a user may hold: a path, bytes, a PIL image or a numpy array), and
comes out as an 8-bit ``RGB`` or ``RGBA`` image in sRGB with its orientation applied.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from pathlib import Path
from typing import BinaryIO, TypeAlias

import numpy as np
from PIL import Image, ImageCms, ImageOps

from ..contract.errors import INVALID_IMAGE_DETAIL, InvalidImageError
from ..contract.formats import MAX_INPUT_PIXELS, open_header, sniff_format
from .sizing import fit_within

__all__ = [
    "decode_image",
    "inspect_image",
    "load_image",
    "ImageLike",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_PROCESS_PIXELS",
    "SUPPORTED_FORMATS",
]

log = logging.getLogger(__name__)

#: Largest input accepted, in pixels (about 8000 x 8000): the API's limit. Bigger inputs are
#: refused before decoding, which is what protects against decompression bombs.
DEFAULT_MAX_PIXELS = MAX_INPUT_PIXELS

#: Largest image the engine processes, in pixels: bigger inputs are decoded at this size (JPEG
#: straight from its DCT at a reduced scale) before matting, so memory per call stays bounded.
#: No output needs more: the spec's largest default output is 12 MP.
DEFAULT_PROCESS_PIXELS = 16_000_000

#: Pillow format names accepted as input. MPO is the multi-picture JPEG many cameras write.
SUPPORTED_FORMATS = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp"}

_SRGB = ImageCms.createProfile("sRGB")

#: What :func:`load_image` reads: a path, encoded bytes, a binary file, a PIL image or an array.
ImageLike: TypeAlias = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray
)


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, target_pixels: int | None = None
) -> Image.Image:
    """Decode uploaded bytes into an oriented 8-bit sRGB ``RGB``/``RGBA`` image.

    With ``target_pixels``, a larger image comes out scaled down (aspect kept, Lanczos on
    premultiplied alpha) to at most that many pixels; a JPEG is decoded at a reduced DCT scale
    first, so the full-size pixels are never held. Raises :class:`InvalidImageError` for empty
    input, formats other than PNG/JPEG/WebP, corrupt or truncated files, and images over
    ``max_pixels``.
    """
    image = _open(data)
    _check_size(image, max_pixels)
    kind = SUPPORTED_FORMATS[image.format].upper()  # type: ignore[index]  # _open checked it
    target = None
    if target_pixels is not None and image.width * image.height > target_pixels:
        target = fit_within(image.width, image.height, target_pixels)
    try:
        image.seek(0)  # animated WebP/PNG and MPO: the first frame is the picture
        if target is not None and kind == "JPG":
            image.draft(None, target)  # DCT scaling: at least ``target``, never the full size
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = f"Invalid image: the {kind} data is corrupt or truncated ({exc})"
        raise InvalidImageError(detail) from None
    if image.mode in _HIGH_BIT_GREY:
        info = image.info
        image = _to_8bit(image)  # 8-bit before anything else: 1 byte per pixel from here
        image.info.update(info)
    if target is not None and image.mode in ("RGB", "L", "RGBA"):
        image = _shrink(image, target_pixels)  # type: ignore[arg-type]  # set with target
    image = normalize_image(image)
    return _shrink(image, target_pixels) if target_pixels is not None else image


def _open(data: bytes) -> Image.Image:
    """The contract's header reader on ``data`` (no pixel decoded): PNG, JPEG or WebP, else an
    error. The size limit is checked by the callers (:func:`_check_size`), before decoding."""
    if not data:
        raise InvalidImageError("Missing image: the upload is empty")
    if sniff_format(data) is None:
        raise InvalidImageError(INVALID_IMAGE_DETAIL)
    try:
        image = open_header(data)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        # what ``Image.open`` turns into ``UnidentifiedImageError``, and its own errors
        detail = f"Invalid image: the file is corrupt or truncated ({exc})"
        raise InvalidImageError(detail) from None
    if image.format not in SUPPORTED_FORMATS:
        raise InvalidImageError(INVALID_IMAGE_DETAIL)
    return image


#: EXIF orientations that swap width and height (rotations by 90 degrees).
_TRANSPOSED = {5, 6, 7, 8}

#: Side of the reduced JPEG decode :func:`inspect_image` makes to check the entropy data.
_CHECK_SIDE = 64


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Validate uploaded bytes without decoding the full frame; returns the oriented size.

    The header gives the format, size and mode (and the pixel limit is checked on it). Beyond
    that only bounded work: a PNG's chunk checksums (:meth:`PIL.Image.Image.verify`, no pixel
    buffer), a JPEG decoded at its smallest DCT scale (1/8). WebP, which Pillow cannot decode
    reduced, is decoded once (at most ``max_pixels`` 8-bit pixels). Raises
    :class:`InvalidImageError` like :func:`decode_image`.
    """
    image = _open(data)
    _check_size(image, max_pixels)
    kind = SUPPORTED_FORMATS[image.format].upper()  # type: ignore[index]  # _open checked it
    width, height = image.size
    try:
        if kind == "PNG":
            _open(data).verify()  # Pillow verifies only a freshly opened image
        else:
            image.seek(0)
            if kind == "JPG":
                image.draft(None, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = f"Invalid image: the {kind} data is corrupt or truncated ({exc})"
        raise InvalidImageError(detail) from None
    try:
        # The base class reads the EXIF already parsed from the header; PNG's own loads pixels.
        orientation = Image.Image.getexif(image).get(0x0112)
    except (OSError, SyntaxError, ValueError):
        orientation = None
    return (height, width) if orientation in _TRANSPOSED else (width, height)


def _shrink(image: Image.Image, max_pixels: int) -> Image.Image:
    """``image`` scaled down to at most ``max_pixels`` (premultiplied when it has alpha)."""
    size = fit_within(image.width, image.height, max_pixels)
    if size == image.size:
        return image
    info = image.info
    if image.mode == "RGBA":
        image = image.convert("RGBa").resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        image = image.convert("RGBA")
    else:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    image.info.update(info)  # keep the ICC profile and EXIF orientation for normalising
    return image


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImageError("Invalid image: it has no pixels")
    if width * height > max_pixels:
        raise InvalidImageError(
            f"Image too large: {width} x {height} = {width * height:,} pixels exceeds the "
            f"limit of {max_pixels:,} pixels"
        )


def normalize_image(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any colour mode to 8-bit sRGB ``RGB``/``RGBA``."""
    icc = image.info.get("icc_profile")
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in _HIGH_BIT_GREY:
        image = _to_8bit(image)
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        rgb, alpha = image.convert("RGB"), image.getchannel("A")
    else:
        rgb, alpha = image, None
    rgb = _to_srgb(rgb, icc)
    if alpha is None or alpha.getextrema() == (255, 255):
        return rgb
    rgb.putalpha(alpha)
    return rgb


#: Greyscale modes with more than 8 bits per pixel (16-bit PNGs open as ``I;16``).
_HIGH_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")

#: Rows converted at a time by :func:`_to_8bit`: the float copies stay a few MB.
_BAND_ROWS = 256


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit or float greyscale to 8-bit ``L`` without clipping highlights.

    Works in bands of rows (float32 per band), so no full-frame float copy is ever made.
    """
    width, height = image.size
    bands = [(0, top, width, min(height, top + _BAND_ROWS)) for top in range(0, height, _BAND_ROWS)]
    peak = max((float(np.asarray(image.crop(box)).max()) for box in bands), default=0.0)
    if image.mode == "F" and peak <= 1.0:
        scale = 255.0
    else:
        scale = 255.0 / 65535.0 if peak > 255 else 1.0
    out = np.empty((height, width), np.uint8)
    for box in bands:
        band = np.asarray(image.crop(box))
        top = box[1]
        values = band.astype(np.float32)
        values *= np.float32(scale)
        np.rint(values, out=values)
        np.clip(values, 0, 255, out=values)
        out[top : top + band.shape[0]] = values
    return Image.fromarray(out, "L")


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert to sRGB ``RGB`` through the embedded ICC profile when there is one."""
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            description = ImageCms.getProfileDescription(source) or ""
            if not ("sRGB" in description and image.mode == "RGB"):
                return ImageCms.profileToProfile(  # type: ignore[return-value]  # not in place
                    image,
                    source,
                    _SRGB,
                    renderingIntent=ImageCms.Intent.PERCEPTUAL,
                    outputMode="RGB",
                )
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            log.warning("ignoring an unusable ICC profile (%s); converting without it", exc)
    return image if image.mode == "RGB" else image.convert("RGB")


def load_image(image: ImageLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Like :func:`decode_image`, for a path, bytes, a binary file, a PIL image or an array.

    Arrays are ``uint8`` (or float in 0..1) of shape HxW, HxWx3 or HxWx4, taken as sRGB.
    """
    if isinstance(image, Image.Image):
        _check_size(image, max_pixels)
        return normalize_image(image)
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InvalidImageError(f"Image file not found: {path}")
        return decode_image(path.read_bytes(), max_pixels=max_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), max_pixels=max_pixels)
    if hasattr(image, "read"):
        return decode_image(image.read(), max_pixels=max_pixels)
    raise InvalidImageError(f"Cannot read an image from {type(image).__name__}")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype.kind == "f":
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    if array.dtype != np.uint8:
        raise InvalidImageError(f"Image arrays must be uint8 or float, got {array.dtype}")
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return normalize_image(Image.fromarray(array, "RGB" if array.shape[2] == 3 else "RGBA"))
    raise InvalidImageError(f"Image arrays must be HxW, HxWx3 or HxWx4, got {array.shape}")
