"""Server API keys: the keys-file format and the one-way hash the server stores.

A keys file is a JSON object mapping each API key to its starting credit balance::

    {"team-alice-7f3c9a": 500, "team-bob-19d2e4": 100.5}

Keys never leave memory: the database and the logs hold :func:`key_hash` /
:attr:`~bgcut_nb.core.config.ApiKey.fingerprint` only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from ..core.config import ApiKey

__all__ = ["key_hash", "load_keys_file", "normalise_keys"]


def key_hash(key: str | ApiKey) -> str:
    """Full SHA-256 of a key (what the database stores; the fingerprint is its prefix)."""
    value = key.reveal() if isinstance(key, ApiKey) else key
    return hashlib.sha256(b"bgcut-nb:" + value.strip().encode()).hexdigest()


def normalise_keys(keys: Mapping[str | ApiKey, float]) -> dict[str, float]:
    """Validate ``{key: credits}``; returns ``{key_hash: credits}``."""
    out: dict[str, float] = {}
    for key, credits in keys.items():
        api_key = ApiKey(key)  # rejects empty keys
        if isinstance(credits, bool) or not isinstance(credits, (int, float)) or credits < 0:
            raise ValueError(
                f"credits for key {api_key.fingerprint} must be a number >= 0, got {credits!r}"
            )
        out[key_hash(api_key)] = float(credits)
    return out


def load_keys_file(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read a keys file (JSON ``{key: credits}``); returns ``{key: credits}``."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f'{path}: expected a JSON object {{"API_KEY": credits, ...}}')
    normalise_keys(data)  # validate before use
    return dict(data)
