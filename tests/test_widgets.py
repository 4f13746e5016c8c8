"""Preview and gallery widgets: real thumbnail pixels, sizes, row switching, escaping."""

from __future__ import annotations

import io
import json

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest
from ipywidgets.embed import embed_data
from notebook_support import LOW_VARIANTS, local_backend, make_photos
from PIL import Image

import bgcut_nb  # noqa: F401 - registers the accessors
from bgcut_nb.notebook.widgets import (
    CHECKER_DARK,
    CHECKER_LIGHT,
    CHECKER_SQUARE,
    PLACEHOLDER_FILL,
    thumbnail,
)


def cards(viewer):
    """``{title: (image widget, info widget)}`` of a preview."""
    out = {}
    for card in viewer.cards.children:
        title, area, info = card.children
        (image,) = area.children
        out[title.value.removeprefix("<b>").removesuffix("</b>")] = (image, info)
    return out


def pixels(image_widget) -> np.ndarray:
    with Image.open(io.BytesIO(image_widget.value)) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture
def frame(tmp_path):
    """Two rows: a photo and a hand-made cut-out (left half transparent, right half red)."""
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (1000, 600), (10, 120, 40)).save(photo)
    rgba = np.zeros((600, 1000, 4), np.uint8)
    rgba[:, :500] = (0, 255, 0, 0)  # transparent (its colour must not show)
    rgba[:, 500:] = (255, 0, 0, 255)
    cut = tmp_path / "cut.png"
    Image.fromarray(rgba, "RGBA").save(cut)
    white = tmp_path / "white.jpg"
    Image.new("RGB", (1000, 600), (255, 255, 255)).save(white)
    return pd.DataFrame(
        {
            "path": [str(photo), str(tmp_path / "gone.jpg")],
            "bgcut_unique_filename": ["u1", None],
            "cut_url": ["file:///cut.png", None],
            "cut_path": [str(cut), None],
            "white_url": ["file:///white.jpg", None],
            "white_path": [str(white), None],
            "bgcut_error": ["", "file not found: <gone.jpg> & co"],
        },
        index=["first", "second"],
    )


def test_preview_shows_original_and_variants_with_checkerboard(frame):
    viewer = frame.bgcut.preview()
    shown = cards(viewer)
    assert list(shown) == ["original", "cut", "white"]
    cut = pixels(shown["cut"][0])
    assert cut.shape == (154, 256, 3)  # a thumbnail, long side 256, never the full 1000 px
    left, right = cut[:, :120], cut[:, 136:]
    assert (right == [255, 0, 0]).all()
    colours = {tuple(c) for c in left.reshape(-1, 3)}
    assert colours == {CHECKER_LIGHT, CHECKER_DARK}  # only the checkerboard, no green
    assert tuple(cut[0, 0]) == CHECKER_LIGHT
    assert tuple(cut[0, CHECKER_SQUARE]) == CHECKER_DARK
    assert tuple(cut[CHECKER_SQUARE, 0]) == CHECKER_DARK
    assert tuple(cut[CHECKER_SQUARE, CHECKER_SQUARE]) == CHECKER_LIGHT
    # opaque outputs get no checkerboard
    assert (np.abs(pixels(shown["white"][0]).astype(int) - 255) <= 2).all()
    info = shown["cut"][1].value
    assert info.startswith("1000x600 · PNG · ") and info.endswith("KB")
    assert shown["white"][1].value.startswith("1000x600 · JPEG · ")
    assert shown["original"][1].value.startswith("1000x600 · JPEG")
    assert len(shown["cut"][0].value) < 20_000


def test_preview_switches_rows_and_escapes_errors(frame):
    viewer = frame.bgcut.preview()
    selector = viewer.selector
    assert [label for label, _ in selector.options] == ["first · photo.jpg", "second · gone.jpg"]
    error = viewer.error
    assert error.value == ""
    selector.value = 1
    shown = cards(viewer)
    assert shown["cut"][1].value.startswith('<span class="bgcut-note" style="color:var(--jp-')
    assert ">file not found<" in shown["original"][1].value
    assert "&lt;gone.jpg&gt; &amp; co" in error.value and "<gone.jpg>" not in error.value
    selector.value = 0
    assert len(cards(viewer)["cut"][0].value) > 0 and error.value == ""


def test_thumbnail_keeps_small_images_small_and_applies_exif(tmp_path):
    small = tmp_path / "s.png"
    Image.new("RGBA", (40, 20), (0, 0, 255, 255)).save(small)
    data, info = thumbnail(small)
    assert (info.width, info.height, info.format) == (40, 20, "PNG")
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (40, 20)
    rotated = tmp_path / "r.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (300, 100), (200, 10, 10)).save(rotated, exif=exif)
    data, _ = thumbnail(rotated, 64)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (21, 64)  # portrait, as a viewer shows it


def test_gallery_is_a_grid_of_small_thumbnails(frame):
    grid = frame.bgcut.gallery("cut")
    _, title, box = grid.children
    assert "cut" in title.value and "2 of 2 rows" in title.value
    first, second = box.children
    image = descendants(first, widgets.Image)[0]
    assert image.format == "jpeg"
    with Image.open(io.BytesIO(image.value)) as img:
        assert max(img.size) == 160 and img.format == "JPEG"
        rgb = np.asarray(img.convert("RGB")).astype(int)
    assert (np.abs(rgb[40:60, 120:150] - [255, 0, 0]) < 30).all()  # red half
    greys = rgb[:, :70]
    assert (np.abs(greys - greys.mean(axis=2, keepdims=True)) < 20).all()  # no green shows
    assert is_placeholder(decoded(descendants(second, widgets.Image)[0]))
    with pytest.raises(KeyError, match="no column 'nope_path'"):
        frame.bgcut.gallery("nope")
    assert frame.bgcut.gallery().children[1].value.startswith("<b>cut</b>")


def test_preview_of_a_real_run(tmp_path, monkeypatch):
    monkeypatch.delenv("BGCUT_API_KEY", raising=False)
    photos = make_photos(tmp_path / "p", 2, size=(320, 200))
    df = pd.DataFrame({"path": [p.name for p in photos]})
    out = df.bgcut.process(
        [{**LOW_VARIANTS[0], "max_resolution": 64_000}, LOW_VARIANTS[1]],
        base_dir=tmp_path / "p",
        out_dir=tmp_path / "out",
        backend=local_backend(tmp_path / "store"),
        cache=tmp_path / "cache",
        progress=False,
    )
    viewer = out.bgcut.preview()  # finds base_dir and the variants from the run
    shown = cards(viewer)
    assert list(shown) == ["original", "cut", "white"]
    original = pixels(shown["original"][0])
    assert original.shape == (160, 256, 3)
    cut = pixels(shown["cut"][0])
    with Image.open(out.loc[0, "cut_path"]) as full:
        alpha = np.asarray(full.getchannel("A").resize(cut.shape[1::-1]))
    transparent = cut[alpha == 0]
    assert len(transparent) > 1000
    is_checker = np.isin(transparent, [CHECKER_LIGHT[0], CHECKER_DARK[0]]).all(axis=1)
    assert is_checker.mean() > 0.95  # the checkerboard shows wherever the cut-out is clear
    state = json.dumps(embed_data(views=[viewer])["manager_state"])
    assert "cut" in state


def decoded(image_widget) -> np.ndarray:
    """The widget's bytes as RGB pixels; fails on empty or invalid bytes (a broken-image icon)."""
    assert image_widget.value, "empty image bytes show as a broken image in the browser"
    with Image.open(io.BytesIO(image_widget.value)) as img:
        assert img.format.lower() == image_widget.format.replace("jpg", "jpeg")
        return np.asarray(img.convert("RGB"))


def is_placeholder(rgb: np.ndarray) -> bool:
    """A placeholder: mostly its flat fill, with some dark text pixels drawn on it."""
    fill = (rgb == PLACEHOLDER_FILL).all(axis=2).mean()
    dark = (rgb.max(axis=2) < 120).mean()
    return fill > 0.8 and dark > 0.002


def test_preview_shows_placeholders_for_missing_files_and_failed_rows(frame, tmp_path):
    deleted = tmp_path / "deleted-output.png"
    frame.loc["first", "white_path"] = str(deleted)  # recorded, then removed from disk
    viewer = frame.bgcut.preview()
    shown = cards(viewer)
    assert not is_placeholder(decoded(shown["cut"][0]))  # a real output is shown as itself
    white = decoded(shown["white"][0])
    assert is_placeholder(white) and white.shape[1] == 256
    assert ">file not found<" in shown["white"][1].value
    assert f'title="{deleted}"' in shown["white"][1].value  # the full path on hover

    viewer.selector.value = 1  # the failed row: its original is gone, no outputs
    shown = cards(viewer)
    assert is_placeholder(decoded(shown["original"][0]))
    assert ">file not found<" in shown["original"][1].value
    for name in ("cut", "white"):
        assert is_placeholder(decoded(shown[name][0]))
        note = shown[name][1].value
        assert ">failed<" in note and "<gone" not in note  # the row's error is not repeated
    # the row's error once, below the cards, the full message on hover only
    assert "file not found: &lt;gone.jpg&gt; &amp; co" in viewer.error.value


def descendants(widget, kind) -> list:
    """Every widget of type ``kind`` inside ``widget``, depth first."""
    found = [widget] if isinstance(widget, kind) else []
    for child in getattr(widget, "children", ()):
        found += descendants(child, kind)
    return found


def test_preview_shows_a_placeholder_for_an_unreadable_file(frame, tmp_path):
    garbage = tmp_path / "not-an-image.png"
    garbage.write_text("hello")
    frame.loc["first", "cut_path"] = str(garbage)
    cut_image, cut_info = cards(frame.bgcut.preview())["cut"]
    assert is_placeholder(decoded(cut_image))
    assert "cannot show: UnidentifiedImageError" in cut_info.value


def test_gallery_shows_placeholders_for_failed_rows(frame):
    first, second = frame.bgcut.gallery("cut").children[-1].children
    assert not is_placeholder(decoded(descendants(first, widgets.Image)[0]))
    assert is_placeholder(decoded(descendants(second, widgets.Image)[0]))
    notes = " ".join(h.value for h in descendants(second, widgets.HTML))
    assert ">failed<" in notes and 'title="file not found: &lt;gone.jpg&gt;' in notes


def test_preview_rows_are_labelled_by_file_name(tmp_path, bgcut_photo):
    """``3 · chelsea.png``: the index and the image's file name; the index alone for bytes."""
    frame = pd.DataFrame({"path": ["a/one.jpg", str(tmp_path / "two.png"), None]}, index=[3, 7, 9])
    selector = frame.bgcut.preview(base_dir=tmp_path).selector
    assert [label for label, _ in selector.options] == ["3 · one.jpg", "7 · two.png", "9"]
    assert [value for _, value in selector.options] == [0, 1, 2]
    photos = pd.DataFrame({"image": [bgcut_photo(64, 48), bgcut_photo(32, 24)]})
    selector = photos.bgcut.preview().selector
    assert [label for label, _ in selector.options] == ["0", "1"]
    many = pd.DataFrame({"path": [f"p{i}.png" for i in range(250)]})
    viewer = many.bgcut.preview(base_dir=tmp_path)  # a slider: the label says the name
    viewer.selector.value = 42
    header = viewer.children[1].children[1].value
    assert "row 43 of 250" in header and "42" in header and "p42.png" in header


def test_gallery_cells_share_width_and_caption_height(frame, tmp_path):
    """Captions line up: fixed cell width, a fixed-height image area, one-line captions."""
    tall = tmp_path / "tall.png"
    Image.new("RGB", (100, 400), (0, 0, 255)).save(tall)
    long_name = "a-photo-with-a-very-long-file-name-that-never-fits-in-a-cell.jpg"
    (tmp_path / long_name).write_bytes((tmp_path / "photo.jpg").read_bytes())
    frame.loc["first", "path"] = str(tmp_path / long_name)
    frame.loc["second", "cut_path"] = str(tall)  # a portrait thumbnail beside a landscape one
    grid = frame.bgcut.gallery("cut", thumb_size=120).children[-1]
    cells = grid.children
    widths = {cell.layout.width for cell in cells}
    assert len(widths) == 1 and widths.pop().endswith("px")
    assert grid.layout.grid_template_columns == f"repeat(auto-fill, {cells[0].layout.width})"
    for cell in cells:
        area, caption, info = cell.children
        assert area.layout.height == "120px"  # the image area, whatever the image's shape
        assert descendants(area, widgets.Image)
        for line in (caption, info):
            assert line.layout.height == cells[0].children[1].layout.height is not None
            assert "text-overflow:ellipsis" in line.value and "white-space:nowrap" in line.value
    caption = cells[0].children[1].value
    assert f'title="first · {long_name}"' in caption  # the full name on hover
    assert ">first · a-photo" in caption
    assert (decoded(descendants(cells[1], widgets.Image)[0]).shape[:2]) == (120, 30)
