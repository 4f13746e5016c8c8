"""What an image cell names: its bytes, or a file path resolved against a base folder.

One rule for the batch runner, the previews, the review widget and the marketplace check:
bytes are the image; a non-blank string or path-like is a file (``~`` expanded, relative paths
taken from ``base_dir`` when one is given); anything else names no image.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["image_source"]


def image_source(
    value: object, base_dir: str | os.PathLike[str] | None = None
) -> bytes | Path | None:
    """The bytes or the resolved path a cell names, or ``None`` (missing, blank, not a path)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        return None
    path = Path(value).expanduser()
    if base_dir is not None and not path.is_absolute():
        return Path(base_dir) / path
    return path
