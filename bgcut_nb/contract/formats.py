"""The input formats the API accepts (PNG, JPEG, WebP), recognised from the content.

Part of the contract: the service answers 400 for anything else, whatever the file is called, and
for inputs over :data:`MAX_INPUT_PIXELS`, so the local engine refuses the same inputs and
estimates charge nothing for them.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.ImageFile import ImageFile

__all__ = [
    "INPUT_FORMATS",
    "MAX_INPUT_PIXELS",
    "SNIFF_BYTES",
    "image_dimensions",
    "open_header",
    "sniff_format",
]

#: Accepted input formats, by the extension each is known as.
INPUT_FORMATS: tuple[str, ...] = ("png", "jpg", "webp")
#: Largest input the API accepts, in pixels; a larger one is a 400 before any charge.
MAX_INPUT_PIXELS = 64_000_000
#: How many leading bytes :func:`sniff_format` needs.
SNIFF_BYTES = 12


def sniff_format(data: bytes) -> str | None:
    """Input format (``png``/``jpg``/``webp``) from the content, or ``None`` if not accepted."""
    head = bytes(data[:SNIFF_BYTES])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def open_header(data: bytes) -> ImageFile:
    """Pillow's reader for an accepted format opened on ``data``: the header is parsed, no pixel
    is decoded and no size limit applies (no ``Image.open`` decompression-bomb check: callers
    check the size themselves). ``ValueError`` when the format is not accepted; a malformed
    header raises what Pillow raises for it."""
    from PIL import JpegImagePlugin, PngImagePlugin, WebPImagePlugin

    readers: dict[str, type[ImageFile]] = {
        "png": PngImagePlugin.PngImageFile,
        "jpg": JpegImagePlugin.JpegImageFile,
        "webp": WebPImagePlugin.WebPImageFile,
    }
    fmt = sniff_format(data)
    if fmt is None:
        raise ValueError("not a PNG, JPEG or WebP image")
    return readers[fmt](io.BytesIO(data))


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG, JPEG or WebP read from its header alone (:func:`open_header`);
    ``None`` when the format is not accepted or the header is unreadable."""
    try:
        with open_header(data) as image:
            return image.size
    except Exception:  # any malformed header: the decoder would refuse it too
        return None
