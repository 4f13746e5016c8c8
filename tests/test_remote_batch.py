"""The notebook layer over HTTP, counted by the project's own server on 127.0.0.1.

Every count here is the server's (``ServerThread.stats``: handled ``upload``, ``process`` and
``file`` requests) or its credit ledger, never the client's own bookkeeping.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from ipywidgets.embed import embed_data
from notebook_support import LOW_VARIANTS, NEW_VARIANT, local_backend, make_photos

import bgcut_nb  # noqa: F401 - registers the accessors
from bgcut_nb import BatchError, BatchStoppedWarning, ReuseCache
from bgcut_nb.backends.remote import RemoteBackend
from bgcut_nb.testing.server import ServerThread

KEY = "sk-notebook-SECRET-7f3a9c"


pytestmark = pytest.mark.usefixtures("bgcut_isolated_env")


@pytest.fixture
def photos(tmp_path):
    return make_photos(tmp_path / "photos", 4)


def serve(tmp_path, credits=1000.0, **options):
    return ServerThread(
        {KEY: credits},
        tmp_path / "server",
        backend=local_backend(tmp_path / "engine"),
        rate_limit=0,
        **options,
    )


def frame_of(paths) -> pd.DataFrame:
    return pd.DataFrame({"path": [str(p) for p in paths]})


def delta(after, before) -> dict:
    return {k: after[k] - before.get(k, 0) for k in ("upload", "process", "file")}


def all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_requests_counted_by_the_server(photos, tmp_path, monkeypatch):
    with serve(tmp_path) as server:
        monkeypatch.setenv("BGCUT_API_KEY", KEY)  # backend=None picks the API when a key is set
        monkeypatch.setenv("BGCUT_API_BASE", server.base_url)
        df = frame_of(photos)
        kw = dict(out_dir=tmp_path / "out", progress=False)

        first = df.bgcut.process(LOW_VARIANTS, **kw)
        assert first.attrs["bgcut"]["backend"] == f"remote:{server.base_url}"
        assert (first["bgcut_error"] == "").all()
        # HTTP requests by kind, and one engine run per process call (none refunded or refused)
        assert dict(server.stats) == {"upload": 4, "process": 4, "file": 8, "engine_calls": 4}

        # running the same cell twice: zero uploads, zero process calls, zero downloads
        before = dict(server.stats)
        df.bgcut.process(LOW_VARIANTS, **kw)
        assert delta(server.stats, before) == {"upload": 0, "process": 0, "file": 0}

        # a new variant later: one process call per row, zero uploads
        before = dict(server.stats)
        later = df.bgcut.process([*LOW_VARIANTS, NEW_VARIANT], **kw)
        assert delta(server.stats, before) == {"upload": 0, "process": 4, "file": 4}
        assert later["bgcut_unique_filename"].tolist() == first["bgcut_unique_filename"].tolist()
        assert server.credits(KEY) == 1000 - 4 * 2 - 4 * 1

        # the estimate agrees with the ledger: everything is done, so nothing more to pay
        assert df.bgcut.estimate_credits([*LOW_VARIANTS, NEW_VARIANT]) == 0.0

    # no secret in the cache, in the outputs, or in the preview widgets
    assert KEY.encode() not in all_bytes(tmp_path / "cache")
    assert KEY.encode() not in all_bytes(tmp_path / "out")
    state = json.dumps(embed_data(views=[later.bgcut.preview(), later.bgcut.gallery()]))
    assert KEY not in state and KEY not in later.to_csv()


def test_expired_upload_on_the_server_is_uploaded_again_once(photos, tmp_path):
    with serve(tmp_path, upload_ttl=1.0) as server:
        backend = RemoteBackend(KEY, server.base_url)
        df = frame_of(photos[:2])
        kw = dict(backend=backend, out_dir=tmp_path / "out", progress=False)
        df.bgcut.process(LOW_VARIANTS[:1], **kw)
        time.sleep(1.2)  # the server forgets the uploads; the client cache still has them
        before = dict(server.stats)
        out = df.bgcut.process(LOW_VARIANTS, **kw)
        # per row: a 404 process call, one re-upload, the real process call, one download
        assert delta(server.stats, before) == {"upload": 2, "process": 4, "file": 2}
        assert out.bgcut.stats["reuploads"] == 2 and (out["bgcut_error"] == "").all()


def test_wrong_key_stops_the_batch_early(photos, tmp_path):
    wrong = "sk-WRONG-key-for-this-server"
    with serve(tmp_path) as server:
        backend = RemoteBackend(wrong, server.base_url)
        df = frame_of(photos)
        with pytest.warns(BatchStoppedWarning, match=r"row 0 failed: AuthenticationError: 401"):
            out = df.bgcut.process(
                LOW_VARIANTS, backend=backend, out_dir=tmp_path / "out", max_workers=1,
                progress=False,
            )  # fmt: skip
        assert server.stats["upload"] == 1 and server.stats["process"] == 0
        with pytest.raises(BatchError, match=r"row 0 failed.*check BGCUT_API_KEY") as info:
            df.bgcut.process(
                LOW_VARIANTS, backend=backend, out_dir=tmp_path / "out", max_workers=1,
                progress=False, errors="raise",
            )  # fmt: skip
    assert out.loc[0, "bgcut_error"].startswith("AuthenticationError: 401")
    rest = out["bgcut_error"].iloc[1:]
    assert rest.str.startswith("not attempted: the batch stopped early because row 0").all()
    assert rest.str.contains("check BGCUT_API_KEY").all()
    assert out.bgcut.stats["not_attempted"] == 3
    assert not (tmp_path / "out").exists()
    for text in [*out["bgcut_error"], str(info.value), repr(backend)]:
        assert wrong not in text
    state = json.dumps(embed_data(views=[out.bgcut.preview()]))
    assert wrong not in state and KEY not in state
    assert wrong.encode() not in all_bytes(tmp_path / "cache")


def test_too_few_credits_stops_early_keeps_finished_rows_and_resumes(photos, tmp_path):
    with serve(tmp_path, credits=5.0) as server:  # 2 credits a row: two rows, then 402
        backend = RemoteBackend(KEY, server.base_url)
        cache = ReuseCache(tmp_path / "c")
        kw = dict(
            backend=backend, out_dir=tmp_path / "out", cache=cache, max_workers=1, progress=False
        )
        df = frame_of(photos)
        with pytest.warns(BatchStoppedWarning, match=r"row 2 failed: InsufficientCreditsError"):
            out = df.bgcut.process(LOW_VARIANTS, **kw)
        assert out["bgcut_error"].tolist()[:2] == ["", ""]
        assert out.loc[2, "bgcut_error"].startswith("InsufficientCreditsError: 402")
        assert out.loc[3, "bgcut_error"].startswith("not attempted: the batch stopped early")
        assert "estimate_credits" in out.loc[3, "bgcut_error"]
        for path in out["cut_path"][:2]:
            assert Path(path).is_file()
        assert server.credits(KEY) == 1.0
        assert df.bgcut.estimate_credits(LOW_VARIANTS, backend=backend, cache=cache) == 4.0

        # a re-run keeps the two finished rows for free and stops again at row 2
        before = dict(server.stats)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = df.bgcut.process(LOW_VARIANTS, **kw)
        assert any(issubclass(w.category, BatchStoppedWarning) for w in caught)
        assert delta(server.stats, before) == {"upload": 0, "process": 1, "file": 0}
        assert again.bgcut.stats["cached"] == 2
        assert server.credits(KEY) == 1.0  # a refused call costs nothing


def test_default_workers_run_rows_in_parallel_and_stay_within_credits(tmp_path):
    photos = make_photos(tmp_path / "photos", 6)
    with serve(tmp_path, credits=7.0) as server:
        backend = RemoteBackend(KEY, server.base_url)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BatchStoppedWarning)
            out = frame_of(photos).bgcut.process(
                LOW_VARIANTS, backend=backend, out_dir=tmp_path / "out", progress=False
            )
        s = out.bgcut.stats
        assert s["done"] == 3 and s["failed"] + s["not_attempted"] == 3
        assert server.credits(KEY) == 1.0
        done = out["bgcut_error"] == ""
        assert all(Path(p).is_file() for p in out.loc[done, "white_path"])
