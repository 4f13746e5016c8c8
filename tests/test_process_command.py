"""``bgcut-nb process``: CSV/Parquet in, the same columns and cache as df.bgcut.process out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from notebook_support import LOW_VARIANTS, make_photos
from PIL import Image

from bgcut_nb.batch.columns import SIGNAL_COLUMNS
from bgcut_nb.cli import main


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A CSV with relative paths (and one missing file) beside its photos, and a variants file."""
    monkeypatch.delenv("BGCUT_API_KEY", raising=False)
    monkeypatch.setenv("BGCUT_CACHE_DIR", str(tmp_path / "env-cache"))
    photos = make_photos(tmp_path / "in" / "img", 3)
    csv = tmp_path / "in" / "list.csv"
    pd.DataFrame(
        {"sku": ["a", "b", "c", "d"], "image": [f"img/{p.name}" for p in photos] + ["img/x.jpg"]}
    ).to_csv(csv, index=False)
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({"output_variants": LOW_VARIANTS}))
    return tmp_path, csv, variants


def test_process_writes_the_same_columns_and_reuses_the_cache(job, capsys):
    tmp_path, csv, variants = job
    out_dir, cache = tmp_path / "out", tmp_path / "cache"
    argv = [
        "process", str(csv), "--variants", str(variants), "--out", str(out_dir),
        "--cache-dir", str(cache), "--workers", "2", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 1  # one row failed
    err = capsys.readouterr().err
    assert "4 rows: 3 done, 0 cached, 1 failed" in err and "3 uploads, 3 process calls" in err
    table = pd.read_csv(out_dir / "results.csv", keep_default_na=False)
    assert list(table.columns) == [
        "sku", "image", "bgcut_unique_filename", "cut_url", "cut_path", "white_url",
        "white_path", "bgcut_error", *SIGNAL_COLUMNS,
    ]  # fmt: skip
    assert table["bgcut_error"].tolist()[:3] == ["", "", ""]
    assert table["bgcut_risk"].tolist()[3] == "" and float(table["bgcut_risk"][0]) >= 0
    assert table.loc[3, "bgcut_error"] == f"file not found: {csv.parent / 'img' / 'x.jpg'}"
    for path in table["cut_path"][:3]:
        assert Path(path).is_relative_to(out_dir.resolve() / "cut")
        with Image.open(path) as img:
            assert img.mode == "RGBA"
    assert (cache / "cache.db").is_file()

    # a second run is served from the cache: no uploads, no processing calls
    parquet = tmp_path / "again.parquet"
    assert main([*argv, "--output", str(parquet)]) == 1
    assert "0 done, 3 cached, 1 failed, 0 not attempted; 0 uploads, 0 process calls" in (
        capsys.readouterr().err
    )
    again = pd.read_parquet(parquet)
    assert again["cut_path"].tolist()[:3] == table["cut_path"].tolist()[:3]


def test_process_usage_errors(job, capsys):
    tmp_path, csv, variants = job
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"variant_name": "x", "format": "gif"}]))
    assert main(["process", str(csv), "--variants", str(bad), "--out", str(tmp_path)]) == 2
    assert "invalid format 'gif'" in capsys.readouterr().err
    argv = ["process", str(csv), "--variants", str(variants), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as info:  # argparse's own usage error
        main([*argv, "--workers", "0"])
    assert info.value.code == 2
    assert "--workers: must be at least 1, got 0" in capsys.readouterr().err


def test_image_column_messages_speak_command_line(job, capsys):
    """The accessor's hints name image_col=...; the command line names --image-col instead."""
    tmp_path, csv, variants = job
    argv = ["process", "--variants", str(variants), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*argv, str(csv), "--image-col", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bgcut-nb process: {csv}: --image-col 'nope' is not a column. ")
    assert err.rstrip().endswith("Available columns: 'sku', 'image'")
    two = tmp_path / "two.csv"
    pd.DataFrame({"front": ["a.jpg"], "back": ["b.png"], "n": [1]}).to_csv(two, index=False)
    assert main([*argv, str(two)]) == 2
    err = capsys.readouterr().err
    assert "several columns look like image paths ['front', 'back']; pass --image-col COLUMN" in err
    assert "Available columns: 'front', 'back', 'n'" in err
    none = tmp_path / "none.csv"
    pd.DataFrame({"sku": ["a"], "n": [1]}).to_csv(none, index=False)
    assert main([*argv, str(none)]) == 2
    err = capsys.readouterr().err
    assert "no column looks like image paths (.png/.jpg/.jpeg/.webp); pass --image-col" in err
    assert "image_col=" not in err
    assert "--backend remote needs BGCUT_API_KEY" in run_cli(argv, csv, "--backend", "remote")


def run_cli(argv: list[str], *more: str) -> str:
    """``bgcut-nb`` as a user runs it (the console script); returns stderr, asserting status 2."""
    exe = Path(sys.executable).with_name("bgcut-nb")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "bgcut_nb"]
    env = {k: v for k, v in os.environ.items() if k != "BGCUT_API_KEY"}
    args = [*command, argv[0], *map(str, more), *argv[1:]]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    return result.stderr


def test_a_table_with_a_header_and_no_rows_succeeds(job, capsys):
    tmp_path, _, variants = job
    empty = tmp_path / "empty.csv"
    empty.write_text("path\n")
    out = tmp_path / "o"
    assert main(["process", str(empty), "--variants", str(variants), "--out", str(out)]) == 0
    assert "0 rows: 0 done, 0 cached, 0 failed, 0 not attempted" in capsys.readouterr().err
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 0
    assert list(table.columns) == [
        "path", "bgcut_unique_filename", "cut_url", "cut_path", "white_url", "white_path",
        "bgcut_error", *SIGNAL_COLUMNS,
    ]  # fmt: skip


def test_process_errors_raise_stops_at_the_bad_row(job, capsys):
    tmp_path, csv, variants = job
    argv = [
        "process", str(csv), "--variants", str(variants), "--out", str(tmp_path / "o"),
        "--errors", "raise", "--workers", "1", "--no-progress", "--no-cache",
    ]  # fmt: skip
    assert main(argv) == 1
    assert "row 3 failed: file not found" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "o" / "results.csv", keep_default_na=False)
    assert table["bgcut_error"].tolist()[:3] == ["", "", ""]


def test_console_script_runs(job):
    tmp_path, csv, variants = job
    exe = Path(sys.executable).with_name("bgcut-nb")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "bgcut_nb"]
    one = tmp_path / "one.csv"
    pd.read_csv(csv).head(1).to_csv(one, index=False)
    (tmp_path / "img").symlink_to(tmp_path / "in" / "img")
    result = subprocess.run(
        [*command, "process", str(one), "--variants", str(variants), "--out",
         str(tmp_path / "o"), "--output", str(tmp_path / "r.csv")],
        capture_output=True, text=True, env={**os.environ}, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 row: 1 done" in result.stderr  # one row, not "1 rows"
    table = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert table.loc[0, "bgcut_error"] == "" and Path(table.loc[0, "cut_path"]).is_file()
