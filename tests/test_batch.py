"""The batch runner: reuse, bad rows, early stop, Ctrl-C, safe paths.

Most tests run on :class:`fake_backend.FakeBackend` (the Backend contract without a model); those
about the local engine's own behaviour (real cut-outs, its storage forgetting uploads, a
missing model) run on the real LocalBackend.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from fake_backend import FakeBackend
from notebook_support import LOW_VARIANTS, NEW_VARIANT, local_backend, make_photos
from PIL import Image

import bgcut_nb  # noqa: F401 - registers df.bgcut
from bgcut_nb import BatchError, BatchStoppedWarning, ModelUnavailableError, ReuseCache
from bgcut_nb.backends.local import LocalBackend
from bgcut_nb.batch.runner import output_path, run_batch, safe_dirname
from bgcut_nb.contract.variants import Variant

pytestmark = pytest.mark.usefixtures("bgcut_isolated_env")


@pytest.fixture
def photos(tmp_path):
    return make_photos(tmp_path / "photos", 4)


@pytest.fixture
def backend():
    return FakeBackend()


@pytest.fixture
def cache(tmp_path):
    with ReuseCache(tmp_path / "cache") as c:
        yield c


def frame_of(paths) -> pd.DataFrame:
    return pd.DataFrame({"path": [str(p) for p in paths]})


def run(df, variants, backend, cache, out_dir, **kw):
    kw.setdefault("progress", False)
    return df.bgcut.process(
        variants, image_col="path", backend=backend, cache=cache, out_dir=out_dir, **kw
    )


# -- reuse -----------------------------------------------------------------------------------


def test_same_cell_twice_costs_nothing_and_new_variant_costs_one_call_per_row(
    photos, backend, cache, tmp_path
):
    df = frame_of(photos)
    out_dir = tmp_path / "out"
    first = run(df, LOW_VARIANTS, backend, cache, out_dir)
    s = first.bgcut.stats
    assert (s["uploads"], s["process_calls"], s["outputs_rendered"]) == (4, 4, 8)
    assert (s["done"], s["cached"], s["failed"]) == (4, 0, 0)
    assert (first["bgcut_error"] == "").all()

    before = dict(cache.counters)
    again = run(df, LOW_VARIANTS, backend, cache, out_dir)
    s = again.bgcut.stats
    assert (s["uploads"], s["process_calls"], s["uploads_reused"]) == (0, 0, 0)
    assert (s["cached"], s["outputs_reused"]) == (4, 8)
    # the cache's own counters agree: 8 output hits, no upload lookups at all
    assert cache.counters["output_hits"] - before.get("output_hits", 0) == 8
    assert cache.counters["upload_misses"] == before.get("upload_misses", 0)
    pd.testing.assert_frame_equal(
        again.drop(columns=[c for c in again if c.endswith("_url")]),
        first.drop(columns=[c for c in first if c.endswith("_url")]),
    )

    later = run(df, [*LOW_VARIANTS, NEW_VARIANT], backend, cache, out_dir)
    s = later.bgcut.stats
    assert (s["uploads"], s["uploads_reused"], s["process_calls"]) == (0, 4, 4)
    assert (s["outputs_rendered"], s["outputs_reused"]) == (4, 8)
    for path in later["thumb_path"]:
        with Image.open(path) as img:
            assert img.format == "WEBP" and img.width * img.height <= 4_000
    # the unique_filename is the same one the first run got: no re-upload
    assert later["bgcut_unique_filename"].tolist() == first["bgcut_unique_filename"].tolist()


def test_outputs_are_real_cutouts_at_the_documented_paths(photos, cache, tmp_path):
    backend = local_backend(tmp_path / "store")
    out = run(frame_of(photos), LOW_VARIANTS, backend, cache, tmp_path / "out")
    for i, row in out.iterrows():
        cut, white = Path(row["cut_path"]), Path(row["white_path"])
        assert cut.parent == (tmp_path / "out" / "cut").resolve()
        assert cut.name.startswith(f"photo{i}-") and cut.suffix == ".png"
        assert white.parent.name == "white" and white.suffix == ".jpg"
        with Image.open(cut) as img:
            assert img.mode == "RGBA"
            alpha = img.getchannel("A")
            corner = alpha.getpixel((1, 1))
            centre = alpha.getpixel((img.width // 2, img.height // 2))
        # the light background is cut away and the disc kept
        assert corner < 32 and centre > 223
        with Image.open(white) as img:
            assert img.mode == "RGB"
        assert row["cut_url"].startswith("file://")


def test_rows_with_the_same_image_are_processed_once(photos, backend, cache, tmp_path):
    copy = tmp_path / "copy-of-photo0.jpg"
    copy.write_bytes(photos[0].read_bytes())
    df = frame_of([photos[0], copy, photos[0], photos[1]])
    out = run(df, LOW_VARIANTS, backend, cache, tmp_path / "out", max_workers=4)
    s = out.bgcut.stats
    assert (s["uploads"], s["process_calls"], s["done"], s["cached"]) == (2, 2, 2, 2)
    assert Path(out.loc[1, "cut_path"]).name.startswith("copy-of-photo0-")
    assert Path(out.loc[1, "cut_path"]).read_bytes() == Path(out.loc[0, "cut_path"]).read_bytes()


def test_tampered_or_deleted_output_is_rendered_again(photos, backend, cache, tmp_path):
    df = frame_of(photos)
    first = run(df, LOW_VARIANTS, backend, cache, tmp_path / "out")
    victim = Path(first.loc[1, "cut_path"])
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    Path(first.loc[2, "white_path"]).unlink()
    again = run(df, LOW_VARIANTS, backend, cache, tmp_path / "out")
    s = again.bgcut.stats
    assert (s["uploads"], s["uploads_reused"], s["process_calls"]) == (0, 2, 2)
    assert (s["outputs_rendered"], s["outputs_reused"], s["cached"]) == (2, 6, 2)
    assert cache.counters["output_stale"] == 2
    with Image.open(again.loc[1, "cut_path"]) as img:
        img.load()  # whole and decodable again
    assert Path(again.loc[2, "white_path"]).is_file()


def test_new_out_dir_copies_cached_outputs_without_requests(photos, backend, cache, tmp_path):
    df = frame_of(photos)
    first = run(df, LOW_VARIANTS, backend, cache, tmp_path / "a")
    second = run(df, LOW_VARIANTS, backend, cache, tmp_path / "b")
    assert second.bgcut.stats["process_calls"] == 0
    for a, b in zip(first["cut_path"], second["cut_path"], strict=True):
        assert Path(b).is_relative_to(tmp_path / "b")
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_expired_upload_is_evicted_and_uploaded_once_more(photos, cache, tmp_path):
    storage = tmp_path / "store"
    df = frame_of(photos[:2])
    backend = local_backend(storage)
    run(df, LOW_VARIANTS[:1], backend, cache, tmp_path / "out")
    # The service forgets the uploads (LocalBackend keeps them in storage/uploads/<id>/):
    # the remembered unique_filenames now answer 404, so each row evicts and uploads again.
    shutil.rmtree(storage / "uploads")
    (storage / "uploads").mkdir()
    out = run(df, LOW_VARIANTS[1:], backend, cache, tmp_path / "out")
    s = out.bgcut.stats
    assert (s["uploads_reused"], s["reuploads"], s["uploads"], s["process_calls"]) == (2, 2, 2, 2)
    assert cache.counters["upload_evictions"] == 2
    assert (out["bgcut_error"] == "").all()
    assert (
        out["bgcut_unique_filename"].isin([p.name for p in (storage / "uploads").iterdir()]).all()
    )


def test_a_second_404_is_a_row_error_not_a_loop(photos, cache, tmp_path):
    storage = tmp_path / "store"
    df = frame_of(photos[:2])
    run(df, LOW_VARIANTS[:1], local_backend(storage), cache, tmp_path / "out")
    forgetful = local_backend(storage, upload_ttl=1e-6)  # every upload is expired at once
    out = run(df, LOW_VARIANTS[1:], forgetful, cache, tmp_path / "out")
    s = out.bgcut.stats
    assert (s["reuploads"], s["uploads"], s["process_calls"], s["failed"]) == (2, 2, 0, 2)
    assert out["bgcut_error"].str.startswith("NotFoundError: 404: Image not found").all()


def test_without_a_cache_everything_is_done_again(photos, backend, tmp_path):
    df = frame_of(photos[:2])
    for _ in range(2):
        out = run(df, LOW_VARIANTS[:1], backend, False, tmp_path / "out")
        assert out.bgcut.stats["uploads"] == 2 and out.bgcut.stats["process_calls"] == 2


# -- bad rows ----------------------------------------------------------------------------------


def test_bad_rows_get_their_cause_and_the_batch_carries_on(photos, backend, cache, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is text, not a PNG")
    df = pd.DataFrame(
        {
            "path": [
                str(photos[0]),
                str(tmp_path / "missing.jpg"),
                None,
                float("nan"),
                str(not_an_image),
                str(photos[1]),
                "",
            ]
        },
        index=["a", "b", "c", "d", "e", "f", "g"],
    )
    out = run(df, LOW_VARIANTS, backend, cache, tmp_path / "out")
    errors = out["bgcut_error"]
    assert errors["a"] == "" and errors["f"] == ""
    assert errors["b"] == f"file not found: {tmp_path / 'missing.jpg'}"
    assert "missing image path" in errors["c"] and "missing image path" in errors["d"]
    assert "InvalidImageError" in errors["e"] and "Invalid image format" in errors["e"]
    assert "missing image path" in errors["g"]
    for label in "bcdeg":
        assert pd.isna(out.loc[label, "cut_path"])
    assert Path(out.loc["f", "cut_path"]).is_file()
    s = out.bgcut.stats
    assert (s["done"], s["failed"], s["not_attempted"], s["stopped"]) == (2, 5, 0, "")


def test_text_progress_shows_done_cached_failed(photos, backend, cache, tmp_path, capsys):
    df = pd.DataFrame({"path": [str(photos[0]), None, str(photos[1])]})
    run(df, LOW_VARIANTS[:1], backend, cache, tmp_path / "out", progress=True)
    first = capsys.readouterr().err
    assert "3/3" in first and "cached=0, done=2, failed=1" in first
    run(df, LOW_VARIANTS[:1], backend, cache, tmp_path / "out", progress=True)
    assert "cached=2, done=0, failed=1" in capsys.readouterr().err
    run(df, LOW_VARIANTS[:1], backend, cache, tmp_path / "out", progress=False)
    assert capsys.readouterr().err == ""


def test_errors_raise_names_the_row_and_keeps_finished_rows(photos, backend, cache, tmp_path):
    df = pd.DataFrame({"path": [str(photos[0]), str(tmp_path / "gone.jpg"), str(photos[1])]})
    df.index = [10, 11, 12]
    with pytest.raises(BatchError, match=r"row 11 failed: file not found: .*gone\.jpg") as info:
        run(df, LOW_VARIANTS, backend, cache, tmp_path / "out", errors="raise", max_workers=1)
    assert info.value.row == 11
    frame = info.value.frame
    assert frame.loc[10, "bgcut_error"] == "" and Path(frame.loc[10, "cut_path"]).is_file()
    assert frame.loc[11, "bgcut_error"].startswith("file not found")
    assert frame.loc[12, "bgcut_error"].startswith("not attempted: the batch stopped early")


class _HeldPath(os.PathLike):
    """A path whose row waits (after the runner has taken it) until ``release`` is set."""

    def __init__(self, path: Path, release: threading.Event) -> None:
        self.path, self.release = path, release

    def __fspath__(self) -> str:
        self.release.wait(60)  # never hangs the suite; in the passing order it is set at once
        return str(self.path)


class _Unreadable(OSError):
    """A row's failure that opens ``release`` once the batch reports it (stop is set by then)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__("this row cannot be read")
        self.release = release

    def __str__(self) -> str:
        self.release.set()
        return super().__str__()


class _UnreadablePath(os.PathLike):
    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def __fspath__(self) -> str:
        raise _Unreadable(self.release)


def test_errors_raise_still_serves_cached_rows_before_the_bad_one(photos, backend, cache, tmp_path):
    """A fully cached row costs nothing: a later row's failure never marks it not attempted."""
    out_dir = tmp_path / "out"
    run(frame_of(photos[:3]), LOW_VARIANTS, backend, cache, out_dir)
    rows = [str(p) for p in photos[:3]] + [str(tmp_path / "gone.jpg")]
    with pytest.raises(BatchError, match="row 3 failed: file not found") as info:
        run(pd.DataFrame({"path": rows}), LOW_VARIANTS, backend, cache, out_dir,
            errors="raise", max_workers=2)  # fmt: skip
    frame, stats = info.value.frame, info.value.result.stats
    assert frame["bgcut_error"].tolist()[:3] == ["", "", ""]
    assert (stats.cached, stats.failed, stats.not_attempted) == (3, 1, 0)

    # The same with the order pinned: the third row is still being read when the bad row's
    # failure has stopped the batch (its reader waits until the failure is reported).
    release = threading.Event()
    held = [photos[0], photos[1], _HeldPath(photos[2], release), _UnreadablePath(release)]
    with pytest.raises(BatchError, match="row 3 failed: _Unreadable") as info:
        run(pd.DataFrame({"path": held}), LOW_VARIANTS, backend, cache, out_dir,
            errors="raise", max_workers=2)  # fmt: skip
    frame, stats = info.value.frame, info.value.result.stats
    assert frame["bgcut_error"].tolist()[:3] == ["", "", ""], frame["bgcut_error"].tolist()
    assert (stats.cached, stats.failed, stats.not_attempted) == (3, 1, 0)
    assert all(Path(p).is_file() for p in frame["cut_path"][:3])
    assert stats.uploads == stats.process_calls == 0


def test_missing_model_stops_early_and_says_why(photos, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("BGCUT_MODEL_SOURCES", "none")
    broken = LocalBackend(tmp_path / "store2", model_dir=tmp_path / "no-models")
    df = frame_of(photos)
    with pytest.warns(BatchStoppedWarning, match=r"row 0 failed.*ModelUnavailableError"):
        out = run(df, LOW_VARIANTS, broken, cache, tmp_path / "out", max_workers=1)
    assert "ModelUnavailableError" in out.loc[0, "bgcut_error"]
    s = out.bgcut.stats
    assert s["stopped"].startswith("stopped early: row 0 failed")
    assert s["not_attempted"] >= 2 and s["done"] == 0
    not_attempted = out["bgcut_error"].str.startswith("not attempted: the batch stopped early")
    assert not_attempted.sum() == s["not_attempted"]
    with pytest.raises(ModelUnavailableError):
        broken.process_image(broken.upload_image(photos[0]).unique_filename, LOW_VARIANTS)


# -- Ctrl-C ------------------------------------------------------------------------------------


class InterruptingBackend(FakeBackend):
    """A fake backend whose second processing call presses Ctrl-C in the main thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0
        self._lock = threading.Lock()

    def process_image(self, unique_filename, variants):
        with self._lock:
            self.calls += 1
            n = self.calls
        result = super().process_image(unique_filename, variants)
        if n == 2:
            # a real SIGINT to the main thread, as Ctrl-C sends: it wakes the main thread from
            # its wait at once (interrupt_main only sets a flag seen at the next bytecode)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            time.sleep(0.2)  # let the main thread take the interrupt while this row finishes
        return result


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt, as in a terminal or a kernel (a shell starts background
    jobs, CI runners among them, with SIGINT ignored; Python then keeps it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_keyboard_interrupt_stops_cleanly_and_a_rerun_resumes(tmp_path, cache, ctrl_c_raises):
    photos = make_photos(tmp_path / "photos", 8)
    df = frame_of(photos)
    interrupting = InterruptingBackend()
    with pytest.raises(KeyboardInterrupt, match="run the same call again to resume"):
        run(df, LOW_VARIANTS, interrupting, cache, tmp_path / "out", max_workers=1)
    assert interrupting.calls < 8  # pending rows were cancelled, not run
    finished = interrupting.calls

    out = run(df, LOW_VARIANTS, FakeBackend(share=interrupting), cache, tmp_path / "out")
    s = out.bgcut.stats
    assert s["cached"] == finished >= 2  # the interrupted row and the ones before it were kept
    assert s["process_calls"] == s["done"] == 8 - finished
    # a row may have uploaded before the stop reached it: then its upload is reused
    assert s["uploads"] + s["uploads_reused"] == 8 - finished
    assert (out["bgcut_error"] == "").all()


# -- paths that cannot escape ------------------------------------------------------------------


HOSTILE_NAMES = ["../x", "/etc", "a/b", "..", ".", "a\\b", "..\\..\\x"]
HOSTILE_NAMES += ["café ü/ñ", "名前", " x ", "a\0b", "x" * 300]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_variant_names_never_leave_out_dir(name, tmp_path):
    out_dir = tmp_path / "out"
    dirname = safe_dirname(name)
    assert dirname and "/" not in dirname and "\\" not in dirname and "\0" not in dirname
    assert not dirname.startswith(".")
    path = output_path(out_dir, Variant(name), "photo", "0" * 64)
    assert path.parent.parent == out_dir.resolve()
    assert path.resolve().is_relative_to(out_dir.resolve())


def test_sanitised_names_keep_readable_names_and_never_collide():
    assert safe_dirname("white_bg") == "white_bg"
    assert safe_dirname("café") == "café"
    names = ["a/b", "a_b", "a\\b", "a b", "..", "...", "/etc", "etc"]
    assert len({safe_dirname(n) for n in names}) == len(names)
    assert safe_dirname("a/b").startswith("a_b-")


def test_hostile_variant_names_end_to_end(photos, backend, cache, tmp_path):
    out_dir = tmp_path / "deep" / "out"
    variants = [
        {"variant_name": name, "quality": "low", "max_resolution": 5_000}
        for name in ["../x", "/etc", "a/b", "..", "ünï"]
    ]
    out = run(frame_of(photos[:1]), variants, backend, cache, out_dir)
    assert out.loc[0, "bgcut_error"] == ""
    written = [p for p in tmp_path.rglob("*.png") if "store" not in p.parts]
    assert len(written) == 5
    assert all(p.resolve().is_relative_to(out_dir.resolve()) for p in written)
    assert (tmp_path / "deep" / "x").exists() is False


def test_run_batch_directly_keeps_input_order_with_repeated_labels(photos, backend, tmp_path):
    items = [("same", str(photos[0])), ("same", str(photos[1])), ("same", None)]
    result = run_batch(  # cache=False: no reuse cache (None would be the shared one)
        items, LOW_VARIANTS[:1], backend=backend, out_dir=tmp_path / "o", cache=False,
        progress=False,
    )  # fmt: skip
    assert [r.status for r in result.rows] == ["done", "done", "failed"]
    assert "photo0-" in result.rows[0].paths["cut"] and "photo1-" in result.rows[1].paths["cut"]
