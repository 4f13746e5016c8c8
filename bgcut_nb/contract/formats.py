"""The input formats the API accepts (PNG, JPEG, WebP), recognised from the content.

Part of the contract: the service answers 400 for anything else, whatever the file is called, so
the local engine refuses the same inputs and estimates charge nothing for them.
"""

from __future__ import annotations

__all__ = ["INPUT_FORMATS", "SNIFF_BYTES", "sniff_format"]

#: Accepted input formats, by the extension each is known as.
INPUT_FORMATS: tuple[str, ...] = ("png", "jpg", "webp")
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
