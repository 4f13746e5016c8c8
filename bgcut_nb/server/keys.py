"""Server API keys: the keys-file format and the keyed one-way hash the server stores.

A keys file is a JSON object mapping each API key to its starting credit balance::

    {"team-alice-7f3c9a": 500, "team-bob-19d2e4": 100.5}

Keys never leave memory: the database and the logs hold :func:`key_hash` only, an
HMAC-SHA256 under a random secret of this server (:func:`load_key_secret`, a file in its
storage dir). Without that secret a stored or logged hash cannot be checked against guessed
keys, so a weak key is not recovered from a leaked log or database.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from ..core.config import ApiKey

__all__ = [
    "KEY_SECRET_FILE",
    "key_hash",
    "legacy_key_hash",
    "load_key_secret",
    "load_keys_file",
    "normalise_keys",
]

#: The secret's file name in the server's storage dir (keep it with the database: without it
#: the stored balances cannot be matched to their keys any more).
KEY_SECRET_FILE = "key-secret"
_SECRET_BYTES = 32


def _reveal(key: str | ApiKey) -> bytes:
    return (key.reveal() if isinstance(key, ApiKey) else key).strip().encode()


def key_hash(key: str | ApiKey, secret: bytes) -> str:
    """HMAC-SHA256 of a key under the server's ``secret`` (what the database stores; the
    logs show its first 16 hex digits)."""
    return hmac.new(secret, _reveal(key), hashlib.sha256).hexdigest()


def legacy_key_hash(key: str | ApiKey) -> str:
    """The unkeyed SHA-256 that databases made before keyed hashes hold (for migrating them)."""
    return hashlib.sha256(b"bgcut-nb:" + _reveal(key)).hexdigest()


def load_key_secret(storage_dir: str | os.PathLike[str]) -> bytes:
    """The server's key-hash secret from ``storage_dir``, created on first use: random, owner
    read/write only, written whole and linked into place so it is made exactly once even by
    servers starting together (the first one's wins)."""
    path = Path(storage_dir) / KEY_SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_SECRET_FILE}.{secrets.token_hex(6)}.part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_hex(_SECRET_BYTES).encode())
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # never replaces a secret already there
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    secret = path.read_bytes().strip()
    if len(secret) < _SECRET_BYTES:
        raise ValueError(
            f"{path}: the key-hash secret is damaged (too short); restore it from a backup "
            "(a new one would orphan every stored balance)"
        )
    return secret


def normalise_keys(keys: Mapping[str | ApiKey, float], secret: bytes) -> dict[str, float]:
    """Validate ``{key: credits}``; returns ``{key_hash: credits}``."""
    out: dict[str, float] = {}
    for key, credits in keys.items():
        api_key = ApiKey(key)  # rejects empty keys
        try:
            _reveal(api_key)
        except UnicodeEncodeError:
            raise ValueError(f"key {api_key.fingerprint} is not valid UTF-8 text") from None
        if isinstance(credits, bool) or not isinstance(credits, (int, float)) or credits < 0:
            raise ValueError(
                f"credits for key {api_key.fingerprint} must be a number >= 0, got {credits!r}"
            )
        out[key_hash(api_key, secret)] = float(credits)
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
    normalise_keys(data, b"\0" * _SECRET_BYTES)  # validate before use
    return dict(data)
