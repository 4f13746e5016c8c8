"""Marketplace presets, the client-side canvas, ``check`` and the ML exports, on real cut-outs.

The cut-outs come from the local engine on ``data/`` (and, once, through the project's own
server on 127.0.0.1 with a real ``RemoteBackend``); every measure is taken again from the
written files' pixels.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import urllib.parse

import numpy as np
import pandas as pd
import pytest
from notebook_support import DATA, make_photos
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

import bgcut_nb
from bgcut_nb.backends.remote import RemoteBackend
from bgcut_nb.cli import main as cli_main
from bgcut_nb.dataset.canvas import CanvasError, render_canvas, write_canvas
from bgcut_nb.dataset.compliance import check_image, measure
from bgcut_nb.dataset.presets import PRESETS, PresetError, preset

AMAZON = "amazon-main"
CUT = f"{AMAZON}-cutout"


def alpha_mask(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA"))[..., 3] > 127


def rgba_subject(width=640, height=400) -> bytes:
    """A PNG cut-out: an off-centre soft-edged ellipse on full transparency."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    d = np.sqrt(((xx - 420) / 150) ** 2 + ((yy - 180) / 90) ** 2)
    alpha = np.clip((1.05 - d) * 255 / 0.1, 0, 255).astype(np.uint8)
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 30, 90, 200, alpha
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def processed(bgcut_engine, tmp_path_factory):
    """``data/images.csv`` plus a missing file, through ``process(preset="amazon-main")``."""
    root = tmp_path_factory.mktemp("market")
    frame = pd.read_csv(DATA / "images.csv")
    frame.loc[len(frame)] = ["missing.png", "not there"]
    out = frame.bgcut.process(
        preset=AMAZON,
        base_dir=DATA,
        out_dir=root / "out",
        backend=bgcut_engine,
        cache=root / "cache",
        progress=False,
    )
    return out, root


def test_the_preset_table_is_sane():
    assert {"amazon-main", "shopify", "etsy", "ebay", "google-merchant"} <= set(PRESETS)
    amazon = preset(AMAZON)
    rules = {(r.measure, r.op, r.required): r.value for r in amazon.rules}
    assert rules[("purity", ">=", True)] == 1.0 and rules[("fill", ">=", True)] == 0.85
    assert rules[("longest", ">=", True)] == 1000 and rules[("longest", ">=", False)] == 1600
    assert rules[("longest", "<=", True)] == 10000 and amazon.format == "JPEG"
    for spec in PRESETS.values():
        assert spec.rules and all(r.source.startswith("https://") for r in spec.rules)
        assert 0.5 < spec.fill < 1
        # the canvas the preset renders meets its own size rules, required or recommended
        size = {"longest": spec.size, "shortest": spec.size, "width": spec.size}
        size["megapixels"] = spec.size**2 / 1e6
        for rule in spec.rules:
            if rule.measure in size:
                assert rule.passes(size[rule.measure]), (spec.name, rule)
            if rule.measure == "fill" and rule.required:
                assert spec.fill > rule.value  # headroom for soft edges and JPEG
            if rule.measure == "format":
                assert spec.format in rule.value
    with pytest.raises(PresetError, match="known presets: amazon-main"):
        preset("amazon")
    assert bgcut_nb.preset(AMAZON) is amazon


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_canvas_of_a_synthetic_cutout_passes_its_preset(name, tmp_path):
    spec = preset(name)
    data = render_canvas(rgba_subject(), spec)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (spec.size,) * 2
    pixels = np.asarray(image)
    band = max(1, round(spec.border * spec.size))
    assert (pixels[:band] == 255).all() and (pixels[-band:] == 255).all()
    assert (pixels[:, :band] == 255).all() and (pixels[:, -band:] == 255).all()
    measured = measure(data)
    assert spec.fill - 0.02 <= measured["fill"] <= spec.fill + 0.01
    report = check_image(data, spec)
    assert report.ok and not report.failed and not report.warnings, report


def test_canvas_refuses_an_empty_cutout():
    empty = io.BytesIO()
    Image.new("RGBA", (50, 40), (0, 0, 0, 0)).save(empty, "PNG")
    with pytest.raises(CanvasError, match="no subject"):
        render_canvas(empty.getvalue(), AMAZON)


def test_process_with_a_preset_makes_canvases_that_pass_check(processed):
    out, root = processed
    assert out["bgcut_error"].iloc[:4].eq("").all()
    assert "file not found" in out["bgcut_error"].iloc[4]
    assert pd.isna(out[f"{AMAZON}_path"].iloc[4])
    checked = out.bgcut.check(AMAZON)  # the canvas column by default
    assert checked[f"{AMAZON}_ok"].iloc[:4].all(), checked[f"{AMAZON}_failed"].tolist()
    assert checked[f"{AMAZON}_failed"].iloc[4].startswith("missing image path")
    for canvas, cutout in zip(out[f"{AMAZON}_path"][:4], out[f"{CUT}_path"][:4], strict=True):
        measured = measure(canvas)
        assert measured["format"] == "JPEG" and measured["width"] == measured["height"] == 2000
        assert measured["purity"] == 1.0 and measured["fill"] >= 0.85
        assert str(root / "out" / AMAZON) in canvas and Image.open(cutout).mode == "RGBA"


def test_check_names_the_failed_rules_of_the_original_photos(processed):
    out, _ = processed
    checked = out.bgcut.check(AMAZON, col="path")  # the user's own photos, relative to data/
    failed = checked[f"{AMAZON}_failed"].tolist()
    assert not checked[f"{AMAZON}_ok"].any()
    sizes = [Image.open(DATA / p).size for p in out["path"][:4]]
    for text, (w, h) in zip(failed, sizes, strict=False):
        assert "purity 0.00 < 1.00" in text and f"longest {max(w, h)} < 1,000" in text
    assert failed[4].startswith("file not found:")
    assert "longest 512 < 1,600" in checked[f"{AMAZON}_warnings"].iloc[0]


def test_canvas_files_are_reused_not_rewritten(processed, tmp_path):
    out, root = processed
    first = out[f"{AMAZON}_path"].iloc[0]
    before = os.stat(first).st_mtime_ns
    again = write_canvas(out[f"{CUT}_path"].iloc[0], root / "out", AMAZON)
    assert str(again) == first and os.stat(first).st_mtime_ns == before


def test_masks_are_8_bit_png_0_255_from_alpha(processed, tmp_path):
    out, _ = processed
    masked = out.bgcut.export_masks(tmp_path / "masks")
    assert masked[f"{CUT}_mask_error"].eq("").all()
    assert pd.isna(masked[f"{CUT}_mask_path"].iloc[4])
    for mask_path, cutout in zip(
        masked[f"{CUT}_mask_path"][:4], out[f"{CUT}_path"][:4], strict=True
    ):
        image = Image.open(mask_path)
        assert image.format == "PNG" and image.mode == "L"
        pixels = np.asarray(image)
        assert set(np.unique(pixels)) <= {0, 255}
        assert np.array_equal(pixels == 255, alpha_mask(cutout))
    # a flattened output holds no mask: the row says so, the others carry on
    bad = out.assign(**{f"{CUT}_path": [out[f"{AMAZON}_path"].iloc[0], *out[f"{CUT}_path"][1:]]})
    bad.attrs = out.attrs
    flagged = bad.bgcut.export_masks(tmp_path / "bad")
    assert "no alpha channel in JPEG RGB output" in flagged[f"{CUT}_mask_error"].iloc[0]
    assert pd.isna(flagged[f"{CUT}_mask_path"].iloc[0])
    assert flagged[f"{CUT}_mask_path"][1:4].notna().all()


def test_coco_file_loads_and_its_masks_equal_the_alpha(processed, tmp_path):
    out, _ = processed
    path = tmp_path / "coco.json"
    dataset = out.bgcut.export_coco(path)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 4 and len(coco.getAnnIds()) == 4
    for image_id, name, cutout in zip(
        coco.getImgIds(), out["path"][:4], out[f"{CUT}_path"][:4], strict=True
    ):
        info = coco.loadImgs(image_id)[0]
        assert info["file_name"] == name
        assert (info["width"], info["height"]) == Image.open(DATA / name).size
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        decoded = coco.annToMask(ann).astype(bool)
        expected = alpha_mask(cutout)
        assert np.array_equal(decoded, expected)
        assert ann["area"] == expected.sum() and isinstance(ann["segmentation"]["counts"], str)
        ys, xs = np.nonzero(expected)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert json.loads(path.read_text()) == json.loads(json.dumps(dataset))
    # the RLE decodes with the library's own decoder too (not only through COCO)
    rle = dict(dataset["annotations"][0]["segmentation"])
    assert np.array_equal(mask_util.decode(rle).astype(bool), alpha_mask(out[f"{CUT}_path"][0]))


def test_coco_only_approved_rows(processed, tmp_path):
    out, _ = processed
    reviewed = out.assign(bgcut_review=["approved", "rejected", "", "approved", ""])
    reviewed.attrs = out.attrs
    dataset = reviewed.bgcut.export_coco(tmp_path / "approved.json", only="approved")
    assert [i["file_name"] for i in dataset["images"]] == ["astronaut.png", "rocket.jpg"]
    with pytest.raises(KeyError, match="bgcut_review"):
        out.bgcut.export_coco(tmp_path / "x.json", only="approved")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_lists_every_output_with_checksums(processed, tmp_path, suffix):
    out, _ = processed
    frame = out.bgcut.export_masks(tmp_path / "masks").assign(
        bgcut_flags=["", "edge", "", "soft,edge", ""],
        bgcut_risk=[0.1, 0.5, 0.2, 0.9, np.nan],
        bgcut_review=["approved", "rejected", "", "approved", ""],
    )
    frame.attrs = out.attrs
    table = frame.bgcut.manifest(tmp_path / f"manifest{suffix}")
    table_path = tmp_path / f"manifest{suffix}"
    written = pd.read_csv(table_path) if suffix == ".csv" else pd.read_parquet(table_path)
    assert table_path.is_file() and len(written) == len(table) == 12  # 4 rows x 3 outputs
    assert list(written.columns) == [
        "row", "output", "path", "url", "bytes", "sha256", "width", "height", "format",
        "bgcut_error", "bgcut_flags", "bgcut_risk", "bgcut_review",
    ]  # fmt: skip
    assert set(written["output"]) == {CUT, AMAZON, f"{CUT}_mask"}
    for _, row in written.iterrows():
        data = open(row["path"], "rb").read()
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == row["bytes"]
        assert Image.open(row["path"]).size == (row["width"], row["height"])
    cut_rows = written[written["output"] == CUT]
    assert cut_rows["url"].str.startswith("file://").all()
    assert written.loc[written["row"] == 3, "bgcut_review"].eq("approved").all()


def test_the_canvas_runs_client_side_over_http(bgcut_server, bgcut_isolated_env, tmp_path):
    """Cut-outs rendered by the project's server on 127.0.0.1, canvas made on this side."""
    photos = make_photos(tmp_path / "photos", 2, size=(320, 240))
    backend = RemoteBackend("test-key", bgcut_server.base_url)
    frame = pd.DataFrame({"image": [str(p) for p in photos]})
    out = frame.bgcut.process(
        bgcut_nb.preset("shopify"), backend=backend, out_dir=tmp_path / "out", progress=False
    )
    assert out["bgcut_error"].eq("").all()
    assert all(urllib.parse.urlsplit(u).hostname == "127.0.0.1" for u in out["shopify-cutout_url"])
    checked = out.bgcut.check("shopify")
    assert checked["shopify_ok"].all() and checked["shopify_warnings"].eq("").all()
    for canvas in out["shopify_path"]:
        assert measure(canvas)["width"] == 2048 and measure(canvas)["purity"] == 1.0
    out.bgcut.export_coco(tmp_path / "coco.json")
    coco = COCO(str(tmp_path / "coco.json"))
    for image_id, cutout in zip(coco.getImgIds(), out["shopify-cutout_path"], strict=True):
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert np.array_equal(coco.annToMask(ann).astype(bool), alpha_mask(cutout))


def test_command_line_check_and_export(processed, tmp_path, capsys):
    out, _ = processed
    results = tmp_path / "results.csv"
    out.to_csv(results, index=False)
    assert cli_main(["check", "--preset", AMAZON, str(DATA / "images.csv")]) == 1
    printed = capsys.readouterr()
    assert "row 0: purity 0.00 < 1.00; longest 512 < 1,000" in printed.out
    assert "0 of 4 rows pass amazon-main" in printed.err
    checked = tmp_path / "checked.csv"
    assert cli_main(["check", "--preset", AMAZON, str(results), "--output", str(checked)]) == 1
    assert pd.read_csv(checked)[f"{AMAZON}_ok"].tolist() == [True] * 4 + [False]
    coco = tmp_path / "coco.json"
    args = ["export", "coco", str(results), "--variant", CUT, "--out", str(coco)]
    args += ["--image-col", "path", "--base-dir", str(DATA)]
    assert cli_main(args) == 0
    assert len(COCO(str(coco)).getAnnIds()) == 4
    masks = ["export", "masks", str(results), "--variant", CUT, "--out", str(tmp_path / "m")]
    assert cli_main(masks) == 0
    assert len(list((tmp_path / "m").glob("*.png"))) == 4
    manifest = tmp_path / "manifest.csv"
    assert cli_main(["export", "manifest", str(results), "--out", str(manifest)]) == 0
    assert len(pd.read_csv(manifest)) == 8
    assert cli_main(["export", "coco", str(results), "--out", str(coco)]) == 2
    assert "pass --variant" in capsys.readouterr().err


def test_estimates_and_series_take_a_preset(bgcut_engine, bgcut_isolated_env, tmp_path):
    photos = pd.Series([str(p) for p in make_photos(tmp_path / "photos", 2)], name="image")
    spec = bgcut_nb.preset("etsy")
    frame = photos.to_frame()
    explicit = frame.bgcut.estimate_credits([spec.variant()], backend=bgcut_engine, cache=False)
    assert frame.bgcut.estimate_credits(spec, backend=bgcut_engine, cache=False) == explicit > 0
    out = photos.bgcut.process(preset="etsy", backend=bgcut_engine, out_dir=tmp_path / "out")
    assert out["etsy_path"].notna().all() and out.bgcut.check("etsy")["etsy_ok"].all()
    with pytest.raises(ValueError, match="pass variants, or preset="):
        frame.bgcut.process(backend=bgcut_engine)
