"""The review workflow: draft locally, review worst first, pay only for approved rows.

Widget logic runs without a browser (buttons via ``.click()``, keys through ipyevents' own
message handler); images are checked on their decoded pixels; decisions are checked in a fresh
process on the same cache folder; charges are the project's own server's ledger on loopback.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ipywidgets.embed import embed_data
from notebook_support import local_backend, make_photos
from PIL import Image
from test_notebooks import workspace  # noqa: F401 - a fixture

import bgcut_nb  # noqa: F401 - registers the accessors
from bgcut_nb import ReuseCache
from bgcut_nb.backends.remote import RemoteBackend
from bgcut_nb.batch.reuse import CacheScope
from bgcut_nb.cli import main
from bgcut_nb.notebook.review import (
    DRAFT_MAX_PIXELS,
    FLAT_COLOUR,
    REVIEW_COL,
    ReviewWidget,
    review_order,
)
from bgcut_nb.notebook.widgets import CHECKER_DARK, CHECKER_LIGHT
from bgcut_nb.testing.server import ServerThread

KEY = "sk-review-SECRET-42b7"
CUT = {"variant_name": "cut", "quality": "low"}  # full size: 12 MP budget
WHITE = {"variant_name": "white", "quality": "low", "format": "jpg", "background_color": "#fff"}

pytestmark = pytest.mark.usefixtures("bgcut_isolated_env")


def key(widget: ReviewWidget, name: str, **mods) -> None:
    """A keydown as ipyevents delivers it from the browser (its comm message handler)."""
    widget.key_events._handle_mouse_msg(None, {"event": "keydown", "key": name, **mods}, [])


def pixels(image_widget) -> np.ndarray:
    assert image_widget.value
    with Image.open(io.BytesIO(image_widget.value)) as img:
        return np.asarray(img.convert("RGB"))


def hand_made(tmp_path: Path, rows: int = 3) -> pd.DataFrame:
    """``rows`` rows with real files: a photo each and a cut-out (left half transparent green,
    right half opaque red), a ``bgcut_risk`` that ranks row 1 worst, then row 2."""
    paths, cuts = [], []
    for i in range(rows):
        photo = tmp_path / f"photo{i}.jpg"
        Image.new("RGB", (400, 200), (10 + 40 * i, 120, 40)).save(photo)
        rgba = np.zeros((200, 400, 4), np.uint8)
        rgba[:, :200] = (0, 255, 0, 0)
        rgba[:, 200:] = (255, 0, 0, 255)
        cut = tmp_path / f"cut{i}.png"
        Image.fromarray(rgba, "RGBA").save(cut)
        paths.append(str(photo))
        cuts.append(str(cut))
    return pd.DataFrame(
        {
            "path": paths,
            "cut_url": [f"file://{c}" for c in cuts],
            "cut_path": cuts,
            "bgcut_error": [""] * rows,
            "bgcut_risk": [0.2, 0.9, 0.5][:rows],
        },
        index=[f"r{i}" for i in range(rows)],
    )


def test_order_is_worst_first_and_works_without_signal_columns():
    frame = pd.DataFrame(
        {
            "bgcut_risk": [0.1, float("nan"), 0.7, 0.7, None],
            "bgcut_flags": ["", "edge,tiny,pieces", "edge", "", "tiny"],
        }
    )
    assert review_order(frame) == [2, 3, 0, 1, 4]  # risk, ties by flags, no risk last
    assert review_order(frame.drop(columns="bgcut_risk")) == [1, 2, 4, 0, 3]
    assert review_order(frame.drop(columns=["bgcut_risk", "bgcut_flags"])) == [0, 1, 2, 3, 4]


def test_buttons_and_keys_decide_in_order_and_count(tmp_path):
    frame = hand_made(tmp_path)
    cache = ReuseCache(tmp_path / "cache")
    w = frame.bgcut.review("cut", cache=cache)
    assert w.current == "r1"  # the riskiest row first
    assert "bgcut-review" in w._dom_classes
    assert "0 of 3 reviewed, 0 rejected" in w.progress.value

    w.buttons["approve"].click()  # r1 approved, on to r2
    assert w.current == "r2"
    key(w, "r")  # r2 rejected, on to r0
    assert w.current == "r0"
    assert "2 of 3 reviewed, 1 rejected" in w.progress.value
    key(w, " ")  # skip: r0 stays undecided; the last row stays on show
    key(w, "ArrowLeft")
    assert w.current == "r2"
    key(w, "a", ctrlKey=True)  # Ctrl+A is not ours
    key(w, "x")
    assert w.current == "r2" and w.frame.loc["r2", REVIEW_COL] == "rejected"
    key(w, "A")  # caps lock: still approve
    assert w.frame[REVIEW_COL].to_dict() == {"r0": "", "r1": "approved", "r2": "approved"}
    key(w, "ArrowUp")
    key(w, "u")  # clear r2 again
    assert w.current == "r2" and w.frame.loc["r2", REVIEW_COL] == ""
    assert "1 of 3 reviewed, 0 rejected" in w.progress.value
    w.buttons["next"].click()
    w.buttons["reject"].click()
    assert w.counts == {"rows": 3, "approved": 1, "rejected": 1, "undecided": 1}
    assert w.frame.columns[-1] == REVIEW_COL and list(w.frame.index) == ["r0", "r1", "r2"]

    # decisions are in the cache; a new widget starts at the first undecided row, worst first
    again = frame.bgcut.review("cut", cache=ReuseCache(tmp_path / "cache"))
    assert again.frame[REVIEW_COL].tolist() == ["rejected", "approved", ""]
    assert again.current == "r2"
    plain = frame.drop(columns="bgcut_risk").bgcut.review("cut", cache=False)
    assert plain.current == "r0" and plain.frame[REVIEW_COL].tolist() == ["", "", ""]


def test_images_are_real_pixels_over_checkerboard_and_flat_colour(tmp_path):
    frame = hand_made(tmp_path, rows=1)
    w = frame.bgcut.review(cache=False)
    checker = pixels(w.images["checkerboard"])
    assert checker.shape == (144, 288, 3)  # a 288 px thumbnail, not the full file
    left, right = checker[:, :136], checker[:, 152:]
    assert {tuple(c) for c in left.reshape(-1, 3)} == {CHECKER_LIGHT, CHECKER_DARK}
    assert (right == [255, 0, 0]).all()
    flat = pixels(w.images["colour"])
    colour = tuple(int(FLAT_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    assert (flat[:, :136] == colour).all() and (flat[:, 152:] == [255, 0, 0]).all()
    w.colour.value = "#203040"
    assert (pixels(w.images["colour"])[:, :136] == [32, 48, 64]).all()
    original = pixels(w.images["original"])
    assert original.shape == (144, 288, 3) and abs(int(original[70, 70, 1]) - 120) < 8
    state = json.dumps(embed_data(views=[w])["manager_state"])
    assert "bgcut-review" in state and "KeyboardEvent" not in state


def test_missing_output_and_unreadable_image_show_placeholders(tmp_path):
    frame = hand_made(tmp_path, rows=2)
    frame.loc["r1", "cut_path"] = None
    frame.loc["r1", "bgcut_error"] = "file not found: gone.jpg"
    Path(frame.loc["r1", "path"]).unlink()
    w = frame.bgcut.review("cut", cache=ReuseCache(tmp_path / "cache"))
    assert w.current == "r1"
    assert "not saved" in w.position.value and "gone.jpg" in w.note.value
    for name in ("original", "checkerboard", "colour"):
        assert pixels(w.images[name]).shape[1] == 288  # a placeholder image, never empty bytes
    w.reject()  # decided in the widget, nothing to key it by in the cache
    assert w.frame.loc["r1", REVIEW_COL] == "rejected"
    assert ReuseCache(tmp_path / "cache").reviews() == []


def test_decisions_persist_by_image_content_in_a_new_process(tmp_path, bgcut_engine):
    photos = make_photos(tmp_path / "p", 3, size=(200, 150))
    copy = tmp_path / "elsewhere" / "same-as-photo0.jpg"
    copy.parent.mkdir()
    shutil.copy(photos[0], copy)
    df = pd.DataFrame({"path": [str(p) for p in photos]})
    cache_dir = tmp_path / "cache"
    out = df.bgcut.process(
        [CUT], draft=True, backend=bgcut_engine, cache=cache_dir, out_dir=tmp_path / "out",
        progress=False,
    )  # fmt: skip
    w = out.bgcut.review(cache=cache_dir)
    w.approve()
    w.reject()
    # a new kernel: another process, the same cache folder, a frame that also has the copy
    later = pd.DataFrame({"path": [str(photos[1]), str(copy), str(photos[2]), "missing.jpg"]})
    later.to_csv(tmp_path / "later.csv", index=False)
    code = (
        "import sys, pandas as pd, bgcut_nb\n"
        "df = pd.read_csv(sys.argv[1])\n"
        "print(df.bgcut.reviewed('cut', cache=sys.argv[2])['bgcut_review'].tolist())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "later.csv"), str(cache_dir)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    decided = dict(zip(w.frame["path"], w.frame["bgcut_review"], strict=True))
    assert sorted(decided.values()) == ["", "approved", "rejected"]  # the two worst rows
    expected = [decided[str(photos[1])], decided[str(photos[0])], decided[str(photos[2])], ""]
    assert run.stdout.strip() == str(expected)

    # the command line exports every decision, or a table with them added
    decisions = tmp_path / "decisions.csv"
    assert (
        main(["review", "export", "--cache-dir", str(cache_dir), "--output", str(decisions)]) == 0
    )
    table = pd.read_csv(decisions, keep_default_na=False)
    assert sorted(table["decision"]) == ["approved", "rejected"]
    assert set(table["variant"]) == {"cut"} and table["image_sha256"].str.len().eq(64).all()
    assert json.loads(table["variant_key"][0])["max_resolution"] == DRAFT_MAX_PIXELS
    added = tmp_path / "later-reviewed.csv"
    argv = [
        "review",
        "export",
        "--cache-dir",
        str(cache_dir),
        "--input",
        str(tmp_path / "later.csv"),
    ]
    assert main([*argv, "--variant", "cut", "--output", str(added)]) == 0
    exported = pd.read_csv(added, keep_default_na=False)
    assert exported[REVIEW_COL].tolist() == expected
    assert main([*argv, "--output", str(added)]) == 2  # which variant? the table cannot say


def test_reviews_survive_the_size_limit_and_clear(tmp_path):
    cache = ReuseCache(tmp_path / "c", size_limit=64 * 1024)
    cache.put_review("ab" * 32, "cut", "approved", image="x.jpg")
    for i in range(3000):  # far past the size limit: uploads are evicted, decisions are not
        cache.put_upload(CacheScope("local:x", "-"), f"{i:064d}", f"u{i}" * 20)
    assert cache.stats()["uploads"] < 3000 and cache.stats()["reviews"] == 1
    assert cache.clear() > 0
    assert ReuseCache(tmp_path / "c").get_review("ab" * 32, "cut") == "approved"
    with pytest.raises(ValueError):
        cache.put_review("ab" * 32, "cut", "maybe")
    assert cache.clear("review") == 1 and cache.get_review("ab" * 32, "cut") == ""


def test_draft_is_local_small_and_apart_even_with_an_api_key(tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "p", 2, size=(1000, 800))
    with ServerThread({KEY: 10.0}, tmp_path / "server", rate_limit=0) as server:
        monkeypatch.setenv("BGCUT_API_KEY", KEY)  # backend=None would pick the API
        monkeypatch.setenv("BGCUT_API_BASE", server.base_url)
        df = pd.DataFrame({"path": [str(p) for p in photos]})
        draft = df.bgcut.process([CUT, WHITE], draft=True, out_dir=tmp_path / "out", progress=False)
        assert server.stats["upload"] == 0 and server.stats["process"] == 0
        with pytest.raises(ValueError, match="local engine"):
            df.bgcut.process([CUT], draft=True, backend="remote", progress=False)
    assert draft.attrs["bgcut"]["backend"].startswith("local:")
    assert draft.attrs["bgcut"]["draft"] == {"max_resolution": DRAFT_MAX_PIXELS}
    assert (draft["bgcut_error"] == "").all()
    for name in ("cut", "white"):
        for path in draft[f"{name}_path"]:
            assert Path(path).is_relative_to(tmp_path / "out-draft" / name)
            with Image.open(path) as img:
                assert img.size == (559, 447)  # 1000x800 scaled into 0.25 MP
    assert not (tmp_path / "out").exists()


def test_only_approved_rows_are_paid_for_at_full_size(tmp_path, bgcut_engine):
    photos = make_photos(tmp_path / "p", 4, size=(800, 600))
    df = pd.DataFrame({"path": [str(p) for p in photos]})
    cache = ReuseCache(tmp_path / "cache")
    kw = dict(cache=cache, out_dir=tmp_path / "out", progress=False)
    draft = df.bgcut.process([CUT], draft=True, backend=bgcut_engine, **kw)
    w = draft.assign(bgcut_risk=[0.1, 0.2, 0.3, 0.4]).bgcut.review(cache=cache)
    key(w, "a")  # row 3
    key(w, "r")  # row 2
    key(w, "a")  # row 1; row 0 stays undecided
    reviewed = draft.bgcut.reviewed(cache=cache)
    assert reviewed[REVIEW_COL].tolist() == ["", "approved", "rejected", "approved"]

    with ServerThread(
        {KEY: 100.0}, tmp_path / "server", backend=local_backend(tmp_path / "e"), rate_limit=0
    ) as server:
        api = RemoteBackend(KEY, server.base_url)
        variants = [CUT, WHITE]
        estimate = draft.bgcut.estimate_credits(variants, backend=api, cache=cache, only="approved")
        assert estimate == {"approved": 4.0, "all": 8.0, "approved_rows": 2, "rows": 4}
        assert draft.bgcut.estimate_credits(variants, backend=api, cache=cache) == 8.0

        final = draft.bgcut.process(variants, backend=api, only="approved", **kw)
        assert dict(server.stats) == {"upload": 2, "process": 2, "file": 4, "engine_calls": 2}
        assert server.credits(KEY) == 100.0 - 4.0
        assert final[REVIEW_COL].tolist() == ["", "approved", "rejected", "approved"]
        assert final["bgcut_error"].tolist() == ["", "", "", ""]
        assert final["bgcut_skipped"].tolist() == [
            "not approved: undecided (review of 'cut')",
            "",
            "not approved: rejected (review of 'cut')",
            "",
        ]
        assert final["cut_path"].isna().tolist() == [True, False, True, False]
        with Image.open(final.loc[1, "cut_path"]) as img:
            assert img.size == (800, 600)  # full size, not the draft's
        assert Path(final.loc[1, "cut_path"]).is_relative_to(tmp_path / "out" / "cut")
        assert final.bgcut.stats["skipped"] == 2 and final.bgcut.stats["done"] == 2

        # a new variant later: the approved rows' uploads are reused, nothing else is touched
        before = dict(server.stats)
        thumb = {"variant_name": "thumb", "quality": "low", "max_resolution": 10_000}
        more = final.bgcut.process([thumb], backend=api, only="approved", **kw)
        delta = {k: server.stats[k] - before[k] for k in ("upload", "process")}
        assert delta == {"upload": 0, "process": 2}
        assert more.bgcut.stats["uploads_reused"] == 2
        assert server.credits(KEY) == 100.0 - 6.0
        estimate = draft.bgcut.estimate_credits(variants, backend=api, cache=cache, only="approved")
        assert estimate["approved"] == 0.0 and estimate["all"] == 4.0

        # decisions edited in pandas count: approve everything left, pay for those two only
        edited = final.assign(bgcut_review="approved")
        edited.bgcut.process(variants, backend=api, only="approved", **kw)
        assert server.credits(KEY) == 100.0 - 10.0
    for text in (final.to_csv(), json.dumps(embed_data(views=[w]))):
        assert KEY not in text
    assert KEY.encode() not in b"".join(
        p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()
    )


def test_review_notebook_keeps_decisions_and_pays_for_approved_rows(workspace):  # noqa: F811
    """notebooks/review.ipynb re-opened with decisions saved earlier (same cache folder)."""
    from test_notebooks import WIDGET_MIME, execute, outputs_of

    cache = ReuseCache(workspace / "cache")
    saved = {"astronaut.png": "approved", "chelsea.png": "rejected", "coffee.png": "approved"}
    for name, decision in saved.items():
        cache.put_review(cache.file_sha256(workspace / "data" / name), "cutout", decision)
    cache.close()
    probe = """import json, sys
from PIL import Image
def size(p):
    with Image.open(p) as img:
        return list(img.size)
print(json.dumps({
    "executable": sys.executable,
    "current": int(w.current),
    "review": final["bgcut_review"].tolist(),
    "skipped": final["bgcut_skipped"].tolist(),
    "draft_sizes": [size(p) for p in draft["cutout_path"]],
    "final_sizes": [size(p) if isinstance(p, str) else None for p in final["cutout_path"]],
    "stats": final.bgcut.stats,
}))"""
    nb, report = execute(workspace, "review", probe)
    assert report["current"] == 3  # the widget opens at the first undecided row
    assert report["review"] == ["approved", "rejected", "approved", ""]
    assert report["skipped"][0] == "" and report["skipped"][1].startswith("not approved: rejected")
    assert report["skipped"][3] == "not approved: undecided (review of 'cutout')"
    assert report["draft_sizes"][0] == [500, 500]  # 512x512 capped at 0.25 MP
    assert report["final_sizes"] == [[512, 512], None, [600, 400], None]
    assert report["stats"]["done"] == 2 and report["stats"]["skipped"] == 2
    assert any(WIDGET_MIME in o.get("data", {}) for o in outputs_of(nb, "w = draft.bgcut"))
    estimate = outputs_of(nb, "draft.bgcut.estimate_credits")[0]["data"]["text/plain"]
    assert estimate == "{'approved': 4.0, 'all': 8.0, 'approved_rows': 2, 'rows': 4}"
    decisions = pd.read_csv(workspace / "output" / "review-decisions.csv", keep_default_na=False)
    assert decisions["bgcut_review"].tolist() == report["review"]


def test_command_line_drafts_then_processes_only_approved_rows(tmp_path, capsys):
    photos = make_photos(tmp_path / "p", 3, size=(800, 600))
    pd.DataFrame({"path": [p.name for p in photos]}).to_csv(tmp_path / "p" / "images.csv")
    (tmp_path / "variants.json").write_text(json.dumps([CUT]))
    argv = ["process", str(tmp_path / "p" / "images.csv"), "--variants"]
    argv += [str(tmp_path / "variants.json"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main([*argv, "--draft"]) == 0
    drafts = pd.read_csv(tmp_path / "out-draft" / "results.csv")
    with Image.open(drafts.loc[0, "cut_path"]) as img:
        assert img.size == (577, 433)  # 800x600 within 0.25 MP
    cache = ReuseCache(tmp_path / "cache")  # BGCUT_CACHE_DIR of bgcut_isolated_env
    cache.put_review(cache.file_sha256(photos[1]), "cut", "approved")
    cache.put_review(cache.file_sha256(photos[2]), "cut", "rejected")
    capsys.readouterr()
    assert main([*argv, "--only", "approved"]) == 0
    err = capsys.readouterr().err
    assert "1 row: 1 done" in err and "2 skipped (not approved)" in err
    final = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False)
    assert final["bgcut_review"].tolist() == ["", "approved", "rejected"]
    assert [bool(p) for p in final["cut_path"]] == [False, True, False]
    with Image.open(final.loc[1, "cut_path"]) as img:
        assert img.size == (800, 600)


def test_only_approved_with_errors_raise_keeps_every_row_in_the_error_frame(tmp_path, bgcut_engine):
    photos = make_photos(tmp_path / "p", 2)
    df = pd.DataFrame(
        {
            "path": [str(photos[0]), str(tmp_path / "gone.jpg"), str(photos[1])],
            "bgcut_review": ["rejected", "approved", None],  # decided in pandas
        }
    )
    with pytest.raises(bgcut_nb.BatchError, match="row 1 failed") as info:
        df.bgcut.process(
            [CUT], backend=bgcut_engine, only="approved", errors="raise", progress=False,
            out_dir=tmp_path / "out",
        )  # fmt: skip
    frame = info.value.frame
    assert list(frame.index) == [0, 1, 2]
    assert frame.loc[1, "bgcut_error"].startswith("file not found")
    assert frame["bgcut_skipped"].tolist() == [
        "not approved: rejected (review of 'cut')",
        "",
        "not approved: undecided (review of 'cut')",
    ]
    with pytest.raises(ValueError, match="only must be"):
        df.bgcut.process([CUT], backend=bgcut_engine, only="rejected", progress=False)
