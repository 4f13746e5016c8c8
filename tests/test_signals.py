"""Quality signals: the measures on mattes with known answers, and the columns they become on
real photos, through the local engine and through the project's server on loopback."""

from __future__ import annotations

import io
import math
import shutil

import imagecodecs
import numpy as np
import pandas as pd
import pytest
from notebook_support import DATA, local_backend
from PIL import Image

import bgcut_nb  # noqa: F401 - registers df.bgcut
from bgcut_nb import ReuseCache
from bgcut_nb.backends.remote import RemoteBackend
from bgcut_nb.batch.columns import SIGNAL_COLUMNS
from bgcut_nb.batch.reuse import CacheScope, OutputRecord
from bgcut_nb.contract.variants import Variant
from bgcut_nb.engine.signals import (
    DEFAULT_THRESHOLDS,
    FLAG_NAMES,
    RISK_FLAGS,
    Signals,
    Thresholds,
    assess,
    flags,
    measure,
    measure_encoded,
    measure_output,
    risk,
    tier_gap,
    working_matte,
)
from bgcut_nb.testing.server import ServerThread

H, W = 200, 300


def disc(cx: float, cy: float, r: float, value: float = 1.0, shape=(H, W)) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
    return np.where(inside, value, 0.0).astype(np.float32)


# -- the measures on synthetic mattes ----------------------------------------------------------


def test_a_disc_in_the_middle_is_one_solid_piece_of_known_area():
    alpha = disc(150, 100, 50)
    s = measure(alpha)
    assert s.pieces == 1
    assert s.edge_touch == 0.0
    assert s.area == pytest.approx(math.pi * 50**2 / (H * W), rel=0.02)
    assert s.soft_share == 0.0
    assert math.isnan(s.tier_gap)  # only one matte: not measured
    assert flags(s) == []
    assert 0 <= risk(s) < 1


def test_two_discs_are_two_pieces_and_specks_do_not_count():
    alpha = np.maximum(disc(70, 100, 40), disc(230, 100, 40))
    assert measure(alpha).pieces == 2
    alpha[5, 150] = 1.0  # one stray pixel: a speck, not a piece
    assert measure(alpha).pieces == 2
    four = np.maximum.reduce([disc(x, y, 15) for x in (25, 275) for y in (25, 175)] + [alpha])
    assert measure(four).pieces == 6
    assert "fragmented" in flags(measure(four))


def test_a_half_transparent_disc_is_see_through_a_solid_one_with_soft_edges_is_not():
    see_through = measure(disc(150, 100, 60, value=0.6))
    assert see_through.soft_share == pytest.approx(1.0)
    assert see_through.pieces == 1
    assert "see-through" in flags(see_through)
    # a solid subject whose edge is soft over 4 px: the edge is not its interior
    yy, xx = np.mgrid[0:H, 0:W]
    distance = np.sqrt((xx - 150.0) ** 2 + (yy - 100.0) ** 2)
    soft_edge = np.clip((60 - distance) / 4, 0, 1).astype(np.float32)
    solid = measure(soft_edge)
    assert solid.soft_share < 0.02
    assert "see-through" not in flags(solid)
    assert risk(see_through) > risk(solid)


def test_a_subject_cut_by_the_frame_touches_the_edge_by_the_share_of_the_border_it_covers():
    alpha = disc(0, 100, 60)  # centred on the left edge: 120 of its column's 200 pixels
    s = measure(alpha)
    border = 2 * (H + W) - 4
    assert s.edge_touch == pytest.approx(120 / border, abs=2 / border)
    assert s.area == pytest.approx(math.pi * 60**2 / 2 / (H * W), rel=0.03)
    everything = measure(np.ones((H, W), np.float32))
    assert everything.edge_touch == 1.0 and everything.area == 1.0
    assert {"touches-edge", "fills-frame"} <= set(flags(everything))


def test_an_empty_or_tiny_matte_is_flagged_tiny_with_a_finite_risk_above_any_sound_one():
    empty = measure(np.zeros((H, W), np.float32))
    assert (empty.area, empty.pieces, empty.edge_touch) == (0.0, 0, 0.0)
    assert flags(empty) == ["tiny"]
    tiny = measure(disc(150, 100, 5))
    assert "tiny" in flags(tiny)
    assert math.isfinite(risk(empty)) and risk(empty) > risk(tiny) > 1
    assert risk(tiny) > risk(measure(disc(150, 100, 50)))


def test_tier_gap_is_the_share_of_the_frame_two_mattes_disagree_on():
    a = disc(150, 100, 50)
    assert tier_gap(a, a) == 0.0
    shifted = np.zeros_like(a)
    shifted[:, : W // 2] = 1.0  # the left half
    expected = np.abs(a - shifted).mean()
    assert tier_gap(a, shifted) == pytest.approx(expected, abs=0.01)
    # the model's 320x320 passes compare with a matte of another size
    small = np.asarray(Image.fromarray(a).resize((150, 100), Image.Resampling.BOX))
    assert tier_gap(a, small) < 0.01
    s = measure(a, gap=0.5)
    assert s.tier_gap == 0.5 and "tiers-disagree" in flags(s)


def test_measures_are_taken_on_a_small_working_copy_whatever_the_size():
    big = np.zeros((3000, 4000), np.uint8)
    big[1000:2000, 1000:3000] = 255
    work = working_matte(big)
    assert max(work.shape) <= 256 and work.dtype == np.float32 and work.max() == 1.0
    s = measure(big)
    assert s.area == pytest.approx(1 / 6, rel=0.02) and s.pieces == 1


def test_risk_adds_the_risk_flags_ratios_and_flags_follow_the_thresholds():
    s = Signals(soft_share=0.3, edge_touch=0.9, area=0.4, pieces=1, tier_gap=math.nan)
    t = DEFAULT_THRESHOLDS
    assert flags(s) == ["see-through", "touches-edge"]
    # touches-edge is reported but does not add to risk; the missing tier gap counts nothing
    assert "touches-edge" not in RISK_FLAGS
    expected = 0.3 / t.see_through + t.tiny / 0.4 + (1 - t.fills_frame) / (1 - 0.4)
    assert risk(s) == pytest.approx(expected)
    strict = Thresholds(see_through=0.5, touches_edge=1.0)
    assert flags(s, strict) == []
    assert math.isnan(risk(Signals())) and flags(Signals()) == []
    assert set(FLAG_NAMES) >= set(RISK_FLAGS)


def test_assess_and_the_round_trip_through_plain_dicts():
    s = measure(disc(150, 100, 60, value=0.6), gap=0.01)
    record = assess(s)
    assert record["flags"] == ["see-through"] and record["risk"] == risk(s)
    assert Signals.from_dict(record) == s
    assert assess(None) == {} and assess(Signals()) == {}


def encoded(alpha: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    a8 = (alpha * 255).astype(np.uint8)
    if fmt == "JPEG":
        Image.fromarray(a8, "L").convert("RGB").save(buffer, fmt)
    else:
        rgba = np.dstack([np.full_like(a8, 200)] * 3 + [a8])
        Image.fromarray(rgba, "RGBA").save(
            buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {})
        )
    return buffer.getvalue()


def test_measured_from_an_encoded_cutouts_alpha_and_never_from_one_without(tmp_path):
    alpha = np.maximum(disc(70, 100, 40), disc(230, 100, 40))
    from_png = measure_encoded(encoded(alpha, "PNG"))
    assert from_png.to_dict() == pytest.approx(
        measure((alpha * 255).astype(np.uint8)).to_dict(), nan_ok=True
    )
    assert from_png.pieces == 2 and from_png.area == pytest.approx(measure(alpha).area, rel=0.02)
    assert measure_encoded(encoded(alpha, "JPEG")) is None
    # grey + alpha, 16-bit and WebP cut-outs measure alike; an opaque PNG has no alpha
    a8 = (alpha * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([a8, a8]), "LA").save(buffer, "PNG")
    wide = imagecodecs.png_encode(np.dstack([(alpha * 65535).astype(np.uint16)] * 4))
    for data in (buffer.getvalue(), wide, encoded(alpha, "WEBP")):
        other = measure_encoded(data)
        assert other.pieces == 2 and other.area == pytest.approx(from_png.area, abs=0.002)
    opaque = io.BytesIO()
    Image.fromarray(a8, "L").convert("RGB").save(opaque, "PNG")
    assert measure_encoded(opaque.getvalue()) is None
    path = tmp_path / "cut.png"
    path.write_bytes(encoded(alpha, "PNG"))
    assert measure_output(path, Variant("cut")).pieces == 2
    assert measure_output(path, Variant("cut", autocrop=True)) is None  # not the photo's frame
    assert measure_output(path, Variant("cut", background_color="#fff")) is None


# -- columns through df.bgcut.process ------------------------------------------------------------

PNG_LOW = {"variant_name": "cut", "quality": "low", "max_resolution": 60_000}
JPG_MEDIUM = {
    "variant_name": "flat",
    "quality": "medium",
    "format": "jpg",
    "max_resolution": 60_000,
}


def photos_frame() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "images.csv")
    return pd.concat([frame, pd.DataFrame({"path": ["missing.png"]})], ignore_index=True)


def signal_frame(out: pd.DataFrame) -> pd.DataFrame:
    return out[list(SIGNAL_COLUMNS)]


def check_columns(out: pd.DataFrame, measured: pd.Series) -> None:
    for column, dtype in SIGNAL_COLUMNS.items():
        assert column in out.columns
        if dtype == "float64":
            assert out[column].dtype == np.float64, column
    for text in out["bgcut_flags"]:
        assert isinstance(text, str)
        assert all(name in FLAG_NAMES for name in text.split(",") if name)
    numbers = out.loc[measured, ["bgcut_risk", "bgcut_soft_share", "bgcut_area"]]
    assert numbers.notna().all().all()
    assert ((out.loc[measured, "bgcut_area"] > 0) & (out.loc[measured, "bgcut_area"] <= 1)).all()
    assert (out.loc[measured, "bgcut_pieces"] >= 1).all()
    # failed or unmeasured rows: no flags, NaN numbers
    assert (out.loc[~measured, "bgcut_flags"] == "").all()
    assert out.loc[~measured, list(SIGNAL_COLUMNS)[1:]].isna().all().all()
    # the flags are what the numbers say
    for _, row in out[measured].iterrows():
        s = Signals.from_dict({c.removeprefix("bgcut_"): row[c] for c in SIGNAL_COLUMNS})
        assert row["bgcut_flags"] == ",".join(flags(s))
        assert row["bgcut_risk"] == pytest.approx(risk(s))


@pytest.mark.usefixtures("bgcut_isolated_env")
def test_local_engine_rows_carry_signals_that_survive_a_rerun_from_the_cache(tmp_path):
    frame = photos_frame()
    store = tmp_path / "engine"
    backend = local_backend(store)
    cache = ReuseCache(tmp_path / "cache")
    options = dict(base_dir=DATA, out_dir=tmp_path / "out", cache=cache, progress=False)
    out = frame.bgcut.process([PNG_LOW, JPG_MEDIUM], backend=backend, **options)
    ok = out["bgcut_error"] == ""
    assert ok.sum() == 4 and not ok.iloc[-1]
    check_columns(out, ok)
    # measured on the matte, even for a JPEG; both models ran: their gap is known
    assert out.loc[ok, "bgcut_tier_gap"].between(0, 1).all()
    assert (out.loc[ok, "bgcut_tier_gap"] > 0).any()

    # the engine's own store is gone: everything comes from the reuse cache and out_dir
    shutil.rmtree(store)
    again = frame.bgcut.process([PNG_LOW, JPG_MEDIUM], backend=local_backend(store), **options)
    assert again.bgcut.stats["cached"] == 4 and again.bgcut.stats["process_calls"] == 0
    pd.testing.assert_frame_equal(signal_frame(again), signal_frame(out))


@pytest.mark.usefixtures("bgcut_isolated_env")
def test_local_engine_runs_no_second_model_for_the_gap_and_the_best_tier_speaks(tmp_path):
    frame = photos_frame().iloc[:2]
    backend = local_backend(tmp_path / "engine")
    options = dict(base_dir=DATA, out_dir=tmp_path / "out", cache=False, progress=False)
    alone = frame.bgcut.process([JPG_MEDIUM], backend=backend, **options)
    assert alone["bgcut_tier_gap"].isna().all()  # only u2net ran
    assert alone["bgcut_area"].notna().all()
    both = frame.bgcut.process([PNG_LOW, JPG_MEDIUM], backend=backend, **options)
    # the row speaks with the medium tier's matte (the same as alone); u2netp ran for the
    # low variant, so now the gap is known
    pd.testing.assert_series_equal(both["bgcut_area"], alone["bgcut_area"])
    assert both["bgcut_tier_gap"].between(0, 1).all()


@pytest.mark.usefixtures("bgcut_isolated_env")
def test_cached_outputs_from_before_signals_are_assessed_on_the_next_run(tmp_path):
    frame = photos_frame().iloc[:2]
    cache = ReuseCache(tmp_path / "cache")
    options = dict(
        base_dir=DATA, out_dir=tmp_path / "out", cache=cache, progress=False, image_col="path"
    )
    backend = local_backend(tmp_path / "engine")
    out = frame.bgcut.process([PNG_LOW], backend=backend, **options)
    # what an older version left in the cache: the same records without signals
    for entry in cache.entries():
        if entry["kind"] == "output":
            key = (CacheScope(entry["backend"], ""), entry["image_sha256"], entry["variant"])
            record = cache.get_output(*key)
            cache.put_output(*key, OutputRecord(**{**record.__dict__, "signals": None}))
            assert cache.get_output(*key).signals is None
    again = frame.bgcut.process([PNG_LOW], backend=backend, **options)
    assert again.bgcut.stats["cached"] == 2
    pd.testing.assert_frame_equal(signal_frame(again), signal_frame(out))
    for entry in cache.entries():
        if entry["kind"] == "output":
            key = (CacheScope(entry["backend"], ""), entry["image_sha256"], entry["variant"])
            assert cache.get_output(*key).signals["risk"] >= 0


@pytest.mark.usefixtures("bgcut_isolated_env")
def test_remote_backend_measures_the_downloaded_alpha_on_the_client(tmp_path):
    frame = photos_frame()
    key = "sk-signals-7c1"
    with ServerThread(
        {key: 100.0}, tmp_path / "server", backend=local_backend(tmp_path / "engine"), rate_limit=0
    ) as server:
        remote = RemoteBackend(key, server.base_url)
        options = dict(
            base_dir=DATA, out_dir=tmp_path / "out", cache=tmp_path / "c", progress=False
        )
        out = frame.bgcut.process([PNG_LOW], backend=remote, **options)
        ok = out["bgcut_error"] == ""
        check_columns(out, ok)
        assert out["bgcut_tier_gap"].isna().all()  # the service sends one model's answer
        for _, row in out[ok].iterrows():
            with open(row["cut_path"], "rb") as fh:
                expected = measure_encoded(fh.read())
            assert row["bgcut_area"] == pytest.approx(expected.area)
            assert row["bgcut_pieces"] == expected.pieces
        # a re-run is served from the cache, signals included
        again = frame.bgcut.process([PNG_LOW], backend=remote, **options)
        assert again.bgcut.stats["cached"] == 4
        pd.testing.assert_frame_equal(signal_frame(again), signal_frame(out))
        # JPEG only: no alpha to measure, so no flags and NaN, and no row fails for it
        flat = frame.bgcut.process([JPG_MEDIUM], backend=remote, **options)
        assert (flat["bgcut_error"] == "").sum() == 4
        check_columns(flat, pd.Series(False, index=flat.index))
        remote.close()
