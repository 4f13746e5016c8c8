"""Configuration from arguments or ``BGCUT_*`` environment variables, and the API-key wrapper.

Every setting has an argument and an environment variable; an explicit argument wins.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import platformdirs

__all__ = [
    "ApiKey",
    "resolve_api_key",
    "resolve_api_base",
    "resolve_cache_dir",
    "resolve_model_dir",
    "resolve_onnx_providers",
    "resolve_storage_dir",
    "resolve_server_dir",
    "resolve_requests_per_minute",
    "DEFAULT_API_BASE",
]

ENV_API_KEY = "BGCUT_API_KEY"
ENV_API_BASE = "BGCUT_API_BASE"
ENV_CACHE_DIR = "BGCUT_CACHE_DIR"
ENV_MODEL_DIR = "BGCUT_MODEL_DIR"
ENV_ONNX_PROVIDERS = "BGCUT_ONNX_PROVIDERS"
ENV_REQUESTS_PER_MINUTE = "BGCUT_REQUESTS_PER_MINUTE"

DEFAULT_API_BASE = "https://api.backgroundcut.co"


#: Salt of :attr:`ApiKey.fingerprint`'s scrypt (16 MiB, tens of ms per try): a fingerprint in a
#: cache file, a repr or a log cannot be matched against guessed weak keys at hash speed.
_FINGERPRINT_SALT = b"bgcut-nb key fingerprint v2"


@functools.lru_cache(maxsize=32)  # in memory only, where the key already is
def _fingerprint(value: str) -> str:
    secret = value.encode("utf-8", "surrogatepass")
    return hashlib.scrypt(secret, salt=_FINGERPRINT_SALT, n=2**14, r=8, p=1, dklen=8).hex()


class ApiKey:
    """An API key that never shows itself: not in repr, str, logs, pickles or exceptions."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, ApiKey):
            value = value.reveal()
        if not isinstance(value, str) or not value.strip():
            raise ValueError("an API key must be a non-empty string")
        self._value = value.strip()

    def reveal(self) -> str:
        """The key itself, for the Authorization header and nothing else."""
        return self._value

    @property
    def fingerprint(self) -> str:
        """A short one-way fingerprint that tells keys apart without revealing them (a slow,
        salted scrypt, computed once per key and process; stable, so cache keys hold)."""
        return _fingerprint(self._value)

    def __repr__(self) -> str:
        return f"ApiKey(fingerprint={self.fingerprint!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __reduce__(self):
        raise TypeError("API keys are never pickled; read them from BGCUT_API_KEY instead")


def resolve_api_key(api_key: str | ApiKey | None = None) -> ApiKey | None:
    """The argument, else ``BGCUT_API_KEY``, else ``None`` (which selects the local engine)."""
    value = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value if isinstance(value, ApiKey) else ApiKey(value)


def resolve_api_base(api_base: str | None = None) -> str:
    """The argument, else ``BGCUT_API_BASE``, else the public service; no trailing slash."""
    value = api_base or os.environ.get(ENV_API_BASE) or DEFAULT_API_BASE
    return value.rstrip("/")


def _user_cache() -> Path:
    return Path(platformdirs.user_cache_dir("bgcut-nb", appauthor=False))


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the notebook cache lives: argument, ``BGCUT_CACHE_DIR``, or the user cache dir."""
    value = cache_dir or os.environ.get(ENV_CACHE_DIR)
    return Path(value).expanduser() if value else _user_cache() / "cache"


def resolve_model_dir(model_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where model files live: argument, ``BGCUT_MODEL_DIR``, or the user cache dir."""
    value = model_dir or os.environ.get(ENV_MODEL_DIR)
    return Path(value).expanduser() if value else _user_cache() / "models"


def resolve_storage_dir(
    storage_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Where the local engine keeps uploads, mattes and outputs: the argument, else
    ``local-engine/`` inside the cache folder (``cache_dir``, else ``BGCUT_CACHE_DIR``, else the
    user cache dir)."""
    if storage_dir:
        return Path(storage_dir).expanduser()
    return resolve_cache_dir(cache_dir) / "local-engine"


def resolve_server_dir(storage_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``bgcut-nb serve`` keeps uploads, outputs and its database: the argument, else
    the user data dir's ``server/`` (``~/.local/share/bgcut-nb/server`` on Linux), apart from
    the local engine's own storage."""
    if storage_dir:
        return Path(storage_dir).expanduser()
    return Path(platformdirs.user_data_dir("bgcut-nb", appauthor=False)) / "server"


def resolve_onnx_providers(providers: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """ONNX Runtime providers in order of preference: argument, else ``BGCUT_ONNX_PROVIDERS``
    (comma-separated), else the CPU alone. Names are checked by the engine."""
    value = providers if providers is not None else os.environ.get(ENV_ONNX_PROVIDERS, "")
    names = value.split(",") if isinstance(value, str) else list(value)
    return tuple(n.strip() for n in names if n and n.strip()) or ("cpu",)


def resolve_requests_per_minute(requests_per_minute: float | None = None) -> float | None:
    """The plan's request rate: argument, else ``BGCUT_REQUESTS_PER_MINUTE``, else ``None``
    (not configured: the client learns it from 429 answers). ``0`` also means not configured."""
    value: float | str | None = requests_per_minute
    if value is None:
        value = os.environ.get(ENV_REQUESTS_PER_MINUTE, "").strip() or None
    if value is None:
        return None
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{ENV_REQUESTS_PER_MINUTE} must be a number of requests per minute, got {value!r}"
        ) from None
    if rate < 0 or rate != rate:
        raise ValueError(f"requests_per_minute must be positive, got {value!r}")
    return rate or None
