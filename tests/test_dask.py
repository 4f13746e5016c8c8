"""``ddf.bgcut.process`` on a real ``dask.distributed`` LocalCluster (2 worker processes).

The Dask result is compared with ``df.bgcut.process`` on the same photos: same columns, index,
order and errors, and the same pixels in every output. Each worker loads u2netp only (quality
low on tiny photos), so the cluster stays small.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from notebook_support import LOW_VARIANTS, make_photos
from PIL import Image

import bgcut_nb
from bgcut_nb import BatchError, LocalBackend

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
import bgcut_nb.notebook.dask_accessor  # noqa: E402, F401 - registers ddf.bgcut


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """BGCUT_CACHE_DIR for this process and the workers (who inherit it when they start)."""
    root = tmp_path_factory.mktemp("dask-home")
    old = {k: os.environ.get(k) for k in ("BGCUT_CACHE_DIR", "BGCUT_API_KEY")}
    os.environ["BGCUT_CACHE_DIR"] = str(root / "cache")
    os.environ.pop("BGCUT_API_KEY", None)
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def client(home):
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def photo_frame(folder: Path) -> pd.DataFrame:
    photos = make_photos(folder, 6)
    paths = [str(p) for p in photos] + [str(folder / "missing.jpg")]
    return pd.DataFrame(
        {"path": paths, "sku": [f"sku-{i}" for i in range(7)]},
        index=pd.Index([f"r{i}" for i in (6, 0, 5, 1, 4, 2, 3)], name="row"),
    )


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_dask_gives_the_pandas_result_on_the_same_photos(home, client, tmp_path):
    df = photo_frame(tmp_path / "photos")
    expected = df.bgcut.process(
        LOW_VARIANTS, backend="local", out_dir=tmp_path / "pandas", cache=False, progress=False
    )
    lazy = dd.from_pandas(df, npartitions=3, sort=False).bgcut.process(
        LOW_VARIANTS, backend="local", out_dir=tmp_path / "dask", cache=False
    )
    assert list(lazy.columns) == list(expected.columns)
    got = lazy.compute()
    workers = set(client.run(os.getpid).values())
    assert len(workers) == 2 and os.getpid() not in workers

    assert list(got.columns) == list(expected.columns)
    assert list(got.index) == list(expected.index) and list(got["sku"]) == list(df["sku"])
    assert list(got["bgcut_error"]) == list(expected["bgcut_error"])
    assert got.loc["r3", "bgcut_error"].startswith("file not found")
    ok = expected["bgcut_error"] == ""
    assert ok.sum() == 6 and got.loc[ok, "bgcut_unique_filename"].notna().all()
    for name in ("cut", "white"):
        pairs = zip(got.loc[ok, f"{name}_path"], expected.loc[ok, f"{name}_path"], strict=True)
        for mine, theirs in pairs:
            assert Path(mine).relative_to(tmp_path / "dask") == Path(theirs).relative_to(
                tmp_path / "pandas"
            )
            a, b = pixels(mine), pixels(theirs)
            assert a.shape == b.shape
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_a_shared_cache_dir_lets_workers_reuse_each_others_work(home, client, tmp_path):
    df = photo_frame(tmp_path / "photos").iloc[:6]
    ddf = dd.from_pandas(df, npartitions=2, sort=False)
    kw = dict(backend="local", out_dir=tmp_path / "out", cache=tmp_path / "shared-cache")
    first = ddf.bgcut.process(LOW_VARIANTS, **kw).compute()
    uploads = tmp_path / "shared-cache" / "local-engine" / "uploads"  # the engine's storage too
    made = {p.name for p in uploads.iterdir()}
    # the other way round: each partition lands where the other one's work was remembered
    again = dd.from_pandas(df.iloc[::-1], npartitions=3, sort=False).bgcut.process(
        LOW_VARIANTS, **kw
    )
    second = again.compute()
    assert {p.name for p in uploads.iterdir()} == made  # no upload, no processing
    assert (first["bgcut_error"] == "").all() and (second["bgcut_error"] == "").all()
    assert list(second["cut_path"]) == list(first["cut_path"][::-1])


def test_errors_raise_surfaces_on_compute(home, client, tmp_path):
    df = photo_frame(tmp_path / "photos")
    lazy = dd.from_pandas(df, npartitions=2, sort=False).bgcut.process(
        LOW_VARIANTS, backend="local", out_dir=tmp_path / "out", errors="raise", cache=False
    )
    with pytest.raises(BatchError, match="file not found"):
        lazy.compute()


def test_backend_instances_are_refused_before_anything_runs(tmp_path):
    ddf = dd.from_pandas(pd.DataFrame({"path": ["a.jpg"]}), npartitions=1)
    with pytest.raises(TypeError, match="zero-argument function"):
        ddf.bgcut.process(LOW_VARIANTS, backend=LocalBackend(tmp_path))


def test_an_image_col_that_is_not_a_column_is_refused_naming_the_columns():
    ddf = dd.from_pandas(pd.DataFrame({"path": ["a.jpg"], "sku": [1]}), npartitions=1)
    with pytest.raises(
        KeyError, match="image_col 'nope' is not a column. Available columns: 'path', 'sku'"
    ):
        ddf.bgcut.process(LOW_VARIANTS, image_col="nope", backend="local")


def test_importing_bgcut_nb_does_not_import_dask():
    code = "import sys, bgcut_nb; assert 'dask' not in sys.modules, 'dask imported'"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    code = (
        "import dask.dataframe as dd, bgcut_nb, pandas as pd; "
        "dd.from_pandas(pd.DataFrame({'p': ['a.png']}), npartitions=1).bgcut.process"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    assert bgcut_nb.__version__


def test_drafts_and_approved_only_runs_give_the_pandas_result(home, client, tmp_path):
    """``draft=True`` and ``only="approved"`` (decisions in ``bgcut_review``) per partition."""
    df = photo_frame(tmp_path / "photos").iloc[:4]
    df["bgcut_review"] = ["approved", "rejected", "approved", ""]
    kw = dict(backend="local", cache=False)
    ddf = dd.from_pandas(df, npartitions=2, sort=False)
    for options in ({"draft": True}, {"only": "approved"}):
        expected = df.bgcut.process(
            LOW_VARIANTS, out_dir=tmp_path / "pandas", progress=False, **kw, **options
        )
        lazy = ddf.bgcut.process(LOW_VARIANTS, out_dir=tmp_path / "dask", **kw, **options)
        assert list(lazy.columns) == list(expected.columns), options
        got = lazy.compute()
        assert list(got.columns) == list(expected.columns), options
        assert list(got["bgcut_error"]) == list(expected["bgcut_error"]), options
        for mine, theirs in zip(got["cut_path"], expected["cut_path"], strict=True):
            if pd.isna(theirs):  # skipped (not approved): no output either way
                assert pd.isna(mine), options
                continue
            assert Path(mine).name == Path(theirs).name, (options, mine, theirs)
            assert Path(mine).parent.parent.name == ("dask-draft" if "draft" in options else "dask")
