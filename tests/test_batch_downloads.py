"""F5: an output that was paid for is never paid for again because its download failed.

The client remembers every output URL as soon as ``process-image`` answers; a re-run downloads
from it (while the URL is valid) instead of processing again. Counts are the server's.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest
from notebook_support import LOW_VARIANTS, local_backend, make_photos

import bgcut_nb  # noqa: F401 - registers the accessors
from bgcut_nb import ReuseCache
from bgcut_nb.backends.remote import RemoteBackend, RetryPolicy
from bgcut_nb.testing.faults import FaultSpec
from bgcut_nb.testing.server import ServerThread

KEY = "sk-downloads-7c1d"
FAST = RetryPolicy(retries=2, backoff=0.01, backoff_max=0.05)
#: Every output download fails (503, retried, then given up); uploads and processing work.
BROKEN_DOWNLOADS = FaultSpec(rate=1.0, kinds=("503",), paths=("/v3/files/",), seed=1)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.delenv("BGCUT_API_KEY", raising=False)
    monkeypatch.setenv("BGCUT_CACHE_DIR", str(tmp_path / "cache"))


def _server(tmp_path, **options) -> ServerThread:
    return ServerThread(
        {KEY: 100.0},
        tmp_path / "server",
        backend=local_backend(tmp_path / "engine"),
        rate_limit=0,
        faults=BROKEN_DOWNLOADS,
        **options,
    )


def _run(df, backend, tmp_path, cache):
    return df.bgcut.process(
        LOW_VARIANTS, backend=backend, out_dir=tmp_path / "out", cache=cache, progress=False
    )


def test_a_failed_download_is_resumed_from_the_remembered_url_without_paying(tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    df = pd.DataFrame({"path": [str(p) for p in photos]})
    cache = ReuseCache(tmp_path / "c")
    with _server(tmp_path) as server:
        backend = RemoteBackend(KEY, server.base_url, retry=FAST)
        first = _run(df, backend, tmp_path, cache)
        assert (first["bgcut_error"] != "").all()  # every download failed...
        assert server.stats["process"] == 3 and server.credits(KEY) == 100 - 3 * 2  # ...paid
        server.proxy.spec = FaultSpec(rate=0.0)  # the network is back
        again = _run(df, backend, tmp_path, cache)
        assert (again["bgcut_error"] == "").all(), again["bgcut_error"].tolist()
        assert server.stats["process"] == 3  # no second process call
        assert server.credits(KEY) == 100 - 3 * 2  # and no second charge
        assert again.bgcut.stats["downloads_resumed"] == 6
        for column in ("cut_path", "white_path"):
            assert all(open(p, "rb").read(4) for p in again[column])
        # a third run is served from the cache: nothing at all is requested
        before = dict(server.stats)
        _run(df, backend, tmp_path, cache)
        assert dict(server.stats) == before


def test_an_expired_remembered_url_falls_back_to_processing(tmp_path):
    photos = make_photos(tmp_path / "photos", 2)
    df = pd.DataFrame({"path": [str(p) for p in photos]})
    cache = ReuseCache(tmp_path / "c")
    with _server(tmp_path, url_ttl=1.0) as server:
        backend = RemoteBackend(KEY, server.base_url, retry=FAST)
        _run(df, backend, tmp_path, cache)
        assert server.stats["process"] == 2
        server.proxy.spec = FaultSpec(rate=0.0)
        time.sleep(2.1)  # the output URLs expire (404)
        again = _run(df, backend, tmp_path, cache)
        assert (again["bgcut_error"] == "").all(), again["bgcut_error"].tolist()
        assert server.stats["process"] == 4  # processed again, once per row
