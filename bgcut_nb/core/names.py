"""File-system-safe names: the one sanitiser for file and folder names made from user text."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_NAME", "safe_filename"]

#: Anything but letters (any script), digits, ``_``, ``.`` and ``-``.
_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)
#: The longest name made (before any suffix the caller adds).
MAX_NAME = 80


def safe_filename(name: str, fallback: str = "variant") -> str:
    """A file or folder name made from ``name`` that cannot leave its folder.

    NFC-normalised; letters (any script), digits, ``_``, ``-`` and dots are kept, any run of
    other characters (separators included) becomes ``_``; leading dots go (no ``..``, no hidden
    files); at most :data:`MAX_NAME` characters; ``fallback`` when nothing is left.
    """
    text = unicodedata.normalize("NFC", str(name))
    return _UNSAFE.sub("_", text).lstrip(".")[:MAX_NAME] or fallback
