"""``bgcut-nb quickstart``: the spec's three variants for the photos in data/, then free re-runs."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bgcut_nb.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"


def test_quickstart_writes_the_three_spec_variants_and_reruns_from_cache(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / "chelsea.png", data)
    pd.read_csv(DATA / "images.csv").query("path == 'chelsea.png'").to_csv(
        data / "images.csv", index=False
    )
    argv = ["quickstart", "--data", str(data), "--out", str(tmp_path / "out")]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "1 done, 0 cached, 0 failed" in first.err
    # the local engine's upload, mattes and outputs are kept in the --cache-dir folder
    (upload,) = (tmp_path / "cache" / "local-engine" / "uploads").iterdir()
    assert list(upload.glob("matte-*.npz")) and list(upload.glob("outputs/*/full.png"))

    results = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False)
    assert list(results["bgcut_error"]) == [""]
    full = Image.open(results.loc[0, "full_path"])
    thumb = Image.open(results.loc[0, "thumbnail_path"])
    white = Image.open(results.loc[0, "white_bg_path"])
    assert (full.format, full.mode, full.size) == ("PNG", "RGBA", (451, 300))
    assert thumb.format == "WEBP" and thumb.width * thumb.height <= 250_000
    assert (white.format, white.mode, white.size) == ("JPEG", "RGB", (451, 300))
    alpha = np.asarray(full)[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255  # a real cut-out, not a copy of the photo
    assert (alpha == 0).mean() > 0.05

    assert main(argv) == 0
    second = capsys.readouterr()
    assert "0 done, 1 cached" in second.err and "0 uploads, 0 process calls" in second.err
