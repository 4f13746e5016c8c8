"""Shared fixtures. Keep this file small; every fixture name starts with ``bgcut_``.

* ``bgcut_photo(width, height, fmt)`` -> bytes of a synthetic product shot (a shaded orange
  ball on a pale studio background), for fast end-to-end tests.
* ``bgcut_engine`` (session) -> one :class:`~bgcut_nb.backends.local.LocalBackend` shared by
  the suite, so models load once.
* ``bgcut_isolated_env`` -> no ``BGCUT_API_KEY``/``BGCUT_API_BASE`` and a fresh
  ``BGCUT_CACHE_DIR`` in the test's tmp dir (so the local engine is the default backend).
* ``bgcut_no_user_folders`` (session, automatic) -> ``BGCUT_CACHE_DIR`` in a session tmp dir,
  so a test that forgets its own cache still writes nothing into the user's ``~/.cache``
  (``tests/test_isolation.py`` checks the suite leaves ``HOME`` alone; the models dir is the one
  exception).
* ``bgcut_server`` -> the project's v3 server (:class:`~bgcut_nb.testing.server.ServerThread`)
  on 127.0.0.1 over ``bgcut_engine``, key ``"test-key"`` with 100 credits, no rate limit.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

TEST_KEY = "test-key"

# ONNX Runtime writes a telemetry device id into ~/.cache when imported (some test modules
# import it before bgcut_nb.engine, which turns it off too).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _photo(width: int = 480, height: int = 360, fmt: str = "JPEG") -> bytes:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack(
        [225 + 20 * y / height, 228 + 15 * y / height, 235 + 10 * y / height], axis=-1
    )
    cx, cy, r = width * 0.5, height * 0.55, min(width, height) * 0.3
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / r
    ball = d < 1.0
    shade = np.clip(1.15 - 0.6 * np.sqrt((x - cx + r / 3) ** 2 + (y - cy + r / 3) ** 2) / r, 0.3, 1)
    colour = np.stack([235 * shade, 110 * shade, 30 * shade], axis=-1)
    pixels = np.where(ball[..., None], colour, background)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture(scope="session")
def bgcut_photo():
    """Factory: ``bgcut_photo(width=480, height=360, fmt="JPEG") -> bytes``."""
    return _photo


@pytest.fixture(scope="session")
def bgcut_engine(tmp_path_factory):
    """One LocalBackend for the whole session (models load once)."""
    from notebook_support import local_backend

    backend = local_backend(tmp_path_factory.mktemp("bgcut-engine"))
    yield backend
    backend.close()


@pytest.fixture(scope="session", autouse=True)
def bgcut_no_user_folders(tmp_path_factory):
    """The default cache folder (and so the local engine's storage) in a session tmp dir."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BGCUT_CACHE_DIR", str(tmp_path_factory.mktemp("default-cache")))
        yield


@pytest.fixture
def bgcut_isolated_env(tmp_path, monkeypatch):
    """No API key or base from the environment, and a cache dir of the test's own."""
    monkeypatch.delenv("BGCUT_API_KEY", raising=False)
    monkeypatch.delenv("BGCUT_API_BASE", raising=False)
    monkeypatch.setenv("BGCUT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def bgcut_server(bgcut_engine, tmp_path):
    """The v3 server on 127.0.0.1 (random port), key ``test-key`` with 100 credits."""
    from bgcut_nb.testing.server import ServerThread

    with ServerThread(
        {TEST_KEY: 100.0}, tmp_path / "bgcut-server", backend=bgcut_engine, rate_limit=0
    ) as server:
        yield server
