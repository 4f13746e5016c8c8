"""df.bgcut / s.bgcut: the result frame, image_col inference, backend choice, estimates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fake_backend import FakeBackend
from notebook_support import LOW_VARIANTS, NEW_VARIANT, make_photos
from PIL import Image

import bgcut_nb  # noqa: F401 - registers the accessors
from bgcut_nb import ReuseCache, Variant
from bgcut_nb.backends.local import LocalBackend
from bgcut_nb.backends.remote import RemoteBackend
from bgcut_nb.batch.columns import SIGNAL_COLUMNS
from bgcut_nb.notebook.accessor import infer_image_col, resolve_backend

pytestmark = pytest.mark.usefixtures("bgcut_isolated_env")


@pytest.fixture
def photos(tmp_path):
    return make_photos(tmp_path / "photos", 3)


@pytest.fixture
def backend():
    """The Backend contract without a model: these tests are about the frames, not pixels."""
    return FakeBackend()


def test_result_is_a_new_frame_with_the_documented_columns(photos, backend, tmp_path):
    df = pd.DataFrame(
        {"title": ["x", "y", "z"], "file": [p.name for p in photos], "n": [3, 1, 2]},
        index=pd.Index(["r3", "r1", "r2"], name="id"),
    )
    original = df.copy()
    variants = [Variant.from_dict(LOW_VARIANTS[0]), LOW_VARIANTS[1]]  # objects and dicts
    out = df.bgcut.process(
        variants,
        base_dir=tmp_path / "photos",
        out_dir=tmp_path / "out",
        backend=backend,
        progress=False,
    )
    pd.testing.assert_frame_equal(df, original)  # the input is untouched
    assert out is not df
    assert list(out.index) == ["r3", "r1", "r2"] and out.index.name == "id"
    assert list(out.columns) == [
        "title", "file", "n",
        "bgcut_unique_filename", "cut_url", "cut_path", "white_url", "white_path", "bgcut_error",
        "bgcut_flags", "bgcut_risk", "bgcut_soft_share", "bgcut_edge_touch", "bgcut_area",
        "bgcut_pieces", "bgcut_tier_gap",
    ]  # fmt: skip
    assert list(SIGNAL_COLUMNS) == list(out.columns[-7:])
    assert (out["bgcut_error"] == "").all()
    for label, name in zip(out.index, df["file"], strict=True):
        assert Path(out.loc[label, "cut_path"]).name.startswith(Path(name).stem + "-")
    assert out.attrs["bgcut"]["image_col"] == "file"
    assert out.bgcut.stats["done"] == 3


def test_image_col_inference(tmp_path):
    single = pd.DataFrame({"name": ["a", "b"], "img": ["a.JPG", "b.webp"], "n": [1, 2]})
    assert infer_image_col(single) == "img"
    two = pd.DataFrame({"a": ["x.png"], "b": ["y.jpeg"]})
    with pytest.raises(ValueError, match=r"several columns.*pass image_col"):
        infer_image_col(two)
    with pytest.raises(ValueError, match="no column looks like image paths"):
        infer_image_col(pd.DataFrame({"a": ["hello"], "n": [1]}))
    raw = pd.DataFrame({"blob": [b"\x89PNG..."], "n": [1]})
    assert infer_image_col(raw) == "blob"
    with pytest.raises(
        KeyError, match="image_col 'nope' is not a column. Available columns: 'name'"
    ):
        single.bgcut.process(LOW_VARIANTS, image_col="nope", progress=False)
    # a frame without rows has nothing to look at: its only column is the image column
    assert infer_image_col(pd.DataFrame({"path": pd.Series([], dtype=str)})) == "path"


def test_reprocessing_a_result_frame_finds_the_original_column(photos, backend, tmp_path):
    df = pd.DataFrame({"path": [str(p) for p in photos]})
    out = df.bgcut.process(LOW_VARIANTS, out_dir=tmp_path / "out", backend=backend, progress=False)
    assert infer_image_col(out) == "path"  # not cut_path / white_path
    again = out.bgcut.process(
        [*LOW_VARIANTS, NEW_VARIANT], out_dir=tmp_path / "out", backend=backend, progress=False
    )
    assert again.bgcut.stats["uploads"] == 0 and again.bgcut.stats["process_calls"] == 3
    assert list(again.columns).count("cut_path") == 1


def test_backend_none_is_local_without_a_key_and_remote_with_one(tmp_path, monkeypatch):
    local = resolve_backend(None)
    assert isinstance(local, LocalBackend)
    assert local.identity == f"local:{(tmp_path / 'cache' / 'local-engine').resolve()}"
    assert resolve_backend(None) is local  # shared, so uploads and models survive between calls
    assert resolve_backend("local") is local
    with pytest.raises(ValueError, match="needs an API key"):
        resolve_backend("remote")
    with pytest.raises(ValueError):
        resolve_backend("cloud")
    monkeypatch.setenv("BGCUT_API_KEY", "sk-test-key")
    monkeypatch.setenv("BGCUT_API_BASE", "http://127.0.0.1:9")
    remote = resolve_backend(None)
    assert isinstance(remote, RemoteBackend) and remote.api_base == "http://127.0.0.1:9"
    assert "sk-test-key" not in remote.identity and "sk-test-key" not in repr(remote)


def test_default_backend_processes_offline(photos, tmp_path):
    out = pd.DataFrame({"path": [str(photos[0])]}).bgcut.process(
        LOW_VARIANTS[:1], out_dir=tmp_path / "out", progress=False
    )
    assert out.loc[0, "bgcut_error"] == ""
    assert out.attrs["bgcut"]["backend"].startswith("local:")
    with Image.open(out.loc[0, "cut_path"]) as img:
        assert img.mode == "RGBA"


def test_estimate_credits_uses_the_cost_table_and_counts_done_rows_free(photos, backend, tmp_path):
    df = pd.DataFrame({"path": [str(p) for p in photos] + [str(tmp_path / "missing.png")]})
    autocrop = {"variant_name": "crop", "quality": "low", "autocrop": True}
    cache = ReuseCache(tmp_path / "c")
    kw = dict(backend=backend, cache=cache)
    # 3 readable rows x (1 + 1 + 1.5); the missing file fails before it costs anything
    with pytest.warns(bgcut_nb.EstimateWarning, match="1 row costs nothing because it will fail"):
        assert df.bgcut.estimate_credits([*LOW_VARIANTS, autocrop], **kw) == 3 * 3.5
    df.iloc[:2].bgcut.process(LOW_VARIANTS, out_dir=tmp_path / "out", progress=False, **kw)
    assert df.bgcut.estimate_credits(LOW_VARIANTS, **kw) == 1 * 2.0  # two rows are done
    assert df.bgcut.estimate_credits([*LOW_VARIANTS, autocrop], **kw) == 2 * 1.5 + 1 * 3.5
    assert df["path"].bgcut.estimate_credits(LOW_VARIANTS, **kw) == 2.0
    assert df.bgcut.estimate_credits(LOW_VARIANTS, backend=backend, cache=False) == 3 * 2.0
    # only process() counted its lookups (2 rows x 2 variants, 2 uploads); estimates did not
    assert dict(cache.counters) == {"output_misses": 4, "upload_misses": 2}


def test_estimate_charges_nothing_for_rows_that_will_fail(photos, backend, tmp_path):
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (32, 24), "red").save(gif)
    text = tmp_path / "notes.jpg"  # a text file with an image's name
    text.write_text("not an image at all\n")
    paths = [str(photos[0]), str(gif), str(text), str(tmp_path / "gone.png"), str(photos[1])]
    df = pd.DataFrame({"path": paths}, index=["a", "gif", "txt", "gone", "b"])
    kw = dict(backend=backend, cache=False)
    with pytest.warns(bgcut_nb.EstimateWarning) as record:
        assert df.bgcut.estimate_credits(LOW_VARIANTS, **kw) == 2 * 2.0
    message = str(record[0].message)
    assert message.startswith("bgcut: 3 rows cost nothing because they will fail: ")
    assert "row 'gif': not a PNG, JPEG or WebP image" in message
    assert "row 'txt': not a PNG, JPEG or WebP image" in message
    assert f"row 'gone': file not found: {tmp_path / 'gone.png'}" in message
    with pytest.warns(bgcut_nb.EstimateWarning, match="3 rows cost nothing"):
        assert df["path"].bgcut.estimate_credits(LOW_VARIANTS, **kw) == 2 * 2.0
    # ...and those are the rows process() fails, with exactly two processing calls
    out = df.bgcut.process(LOW_VARIANTS, out_dir=tmp_path / "out", progress=False, **kw)
    assert (out["bgcut_error"] != "").tolist() == [False, True, True, True, False]
    assert out.bgcut.stats["process_calls"] == 2


def test_series_accessor_process_and_upload(photos, backend, tmp_path):
    s = pd.Series([str(p) for p in photos] + [None], index=[5, 6, 7, 8], name="p")
    cache = ReuseCache(tmp_path / "c")
    ids = s.bgcut.upload(backend=backend, cache=cache, progress=False)
    assert list(ids.index) == [5, 6, 7, 8]
    assert ids.iloc[:3].notna().all() and ids.iloc[3] is None
    assert ids.attrs["bgcut_errors"][3].startswith("missing image path")
    assert ids.attrs["bgcut"]["stats"]["uploads"] == 3
    again = s.bgcut.upload(backend=backend, cache=cache, progress=False)
    assert again.attrs["bgcut"]["stats"]["uploads"] == 0
    assert again.tolist() == ids.tolist()
    # processing after upload() re-uses those uploads
    out = s.bgcut.process(
        LOW_VARIANTS[:1], backend=backend, cache=cache, out_dir=tmp_path / "o", progress=False
    )
    assert list(out.columns) == [
        "p", "bgcut_unique_filename", "cut_url", "cut_path", "bgcut_error", *SIGNAL_COLUMNS
    ]  # fmt: skip
    assert out.bgcut.stats["uploads"] == 0 and out.bgcut.stats["process_calls"] == 3
    assert out["bgcut_unique_filename"].iloc[:3].tolist() == ids.iloc[:3].tolist()


def test_empty_frames_and_bad_variants(tmp_path):
    empty = pd.DataFrame({"path": pd.Series([], dtype=str)})
    out = empty.bgcut.process(
        LOW_VARIANTS[:1], image_col="path", out_dir=tmp_path / "o", progress=False
    )
    assert list(out.columns) == ["path", "bgcut_unique_filename", "cut_url", "cut_path",
                                 "bgcut_error", *SIGNAL_COLUMNS]  # fmt: skip
    assert len(out) == 0 and out.bgcut.stats["rows"] == 0
    assert "nothing to preview" in out.bgcut.preview().children[0].value
    df = pd.DataFrame({"path": ["x.png"]})
    with pytest.raises(bgcut_nb.BadRequestError, match="invalid format 'gif'"):
        df.bgcut.process([{"variant_name": "a", "format": "gif"}], out_dir=tmp_path / "bad")
    with pytest.raises(bgcut_nb.BadRequestError, match="Duplicate variant_name"):
        df.bgcut.process([LOW_VARIANTS[0], LOW_VARIANTS[0]], out_dir=tmp_path / "bad")
    with pytest.raises(ValueError, match="errors must be"):
        df.bgcut.process(LOW_VARIANTS, out_dir=tmp_path / "bad", errors="ignore")
    assert not (tmp_path / "bad").exists()  # nothing was written or sent
