"""What a new user meets first (issue 20, item 8): empty tables, numpy numbers, results-table
formats, a wrong ``out_dir``, oversized inputs in estimates and previews, Ctrl-C on the command
line, and counts in plain English."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_KEY
from notebook_support import LOW_VARIANTS, REPO, make_photos

import bgcut_nb  # noqa: F401 - registers the accessors
from bgcut_nb import BadRequestError, EstimateWarning, RemoteBackend, Variant
from bgcut_nb.batch.columns import SIGNAL_COLUMNS
from bgcut_nb.cli import main

pytestmark = pytest.mark.usefixtures("bgcut_isolated_env")

ONE = LOW_VARIANTS[:1]
RESULT_COLUMNS = [
    "bgcut_unique_filename",
    "cut_url",
    "cut_path",
    "bgcut_error",
    *SIGNAL_COLUMNS,
]


def oversized_png(width: int = 12_000, height: int = 12_000) -> bytes:
    """A valid greyscale PNG of ``width`` x ``height`` black pixels (about 140 KB for 144 MP),
    written without ever holding its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + one byte per pixel
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture
def job(tmp_path):
    """Two photos listed in a CSV, a variants file and the command line to process them."""
    photos = make_photos(tmp_path / "in", 2)
    csv = tmp_path / "in" / "list.csv"
    pd.DataFrame({"sku": ["a", "b"], "image": [p.name for p in photos]}).to_csv(csv, index=False)
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps(ONE))
    argv = ["process", str(csv), "--variants", str(variants), "--no-progress"]
    return tmp_path, csv, argv


def uploads(tmp_path: Path) -> list[Path]:
    """What the local engine stored in the test's cache folder (BGCUT_CACHE_DIR)."""
    folder = tmp_path / "cache" / "local-engine" / "uploads"
    return list(folder.iterdir()) if folder.is_dir() else []


# -- a table with a header and no rows ---------------------------------------------------------
def test_a_header_only_table_gives_an_empty_result(job, capsys):
    tmp_path, _, argv = job
    empty = tmp_path / "empty.csv"
    empty.write_text("sku,image,title\n")  # several columns: none can be told to hold images
    argv = [argv[0], str(empty), *argv[2:], "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    assert "0 rows: 0 done, 0 cached, 0 failed, 0 not attempted" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "o" / "results.csv")
    assert len(table) == 0 and list(table.columns) == ["sku", "image", "title", *RESULT_COLUMNS]

    frame = pd.DataFrame({"sku": [], "front": [], "back": []})
    out = frame.bgcut.process(ONE, out_dir=tmp_path / "o2", progress=False)
    assert out.empty and list(out.columns) == ["sku", "front", "back", *RESULT_COLUMNS]
    assert frame.bgcut.estimate_credits(ONE) == 0.0
    assert uploads(tmp_path) == []


# -- numpy numbers in variants -----------------------------------------------------------------
def test_numpy_integers_and_bools_are_accepted_in_variants():
    row = pd.DataFrame({"max_resolution": [1_000_000], "output_compression": [90]}).iloc[0]
    assert isinstance(row["max_resolution"], np.integer)  # what a DataFrame cell holds
    variant = Variant(
        "thumb",
        max_resolution=row["max_resolution"],
        output_compression=np.uint8(90),
        autocrop=np.bool_(True),
    )
    plain = Variant("thumb", max_resolution=1_000_000, output_compression=90, autocrop=True)
    assert variant == plain and variant.cache_key() == plain.cache_key()
    assert type(variant.max_resolution) is int and type(variant.autocrop) is bool
    assert json.loads(json.dumps(variant.to_dict()))["max_resolution"] == 1_000_000
    for field, value in [
        ("max_resolution", np.bool_(True)),
        ("max_resolution", np.float64(1e6)),
        ("max_resolution", np.int64(0)),
        ("output_compression", np.int32(101)),
        ("autocrop", np.int64(1)),
        ("autocrop", np.array([True, False])),
    ]:
        with pytest.raises(BadRequestError, match=field):
            Variant("x", **{field: value})


# -- the results table's format ------------------------------------------------------------------
def test_output_is_written_in_the_format_its_suffix_names(job, capsys):
    tmp_path, _, argv = job
    argv = [*argv, "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]
    assert main([*argv, "--output", str(tmp_path / "res.xlsx")]) == 0
    raw = (tmp_path / "res.xlsx").read_bytes()
    assert raw[:2] == b"PK"  # an Excel workbook (a zip), not CSV text
    excel = pd.read_excel(tmp_path / "res.xlsx", keep_default_na=False)
    assert list(excel.columns) == ["sku", "image", *RESULT_COLUMNS]
    assert excel["bgcut_error"].tolist() == ["", ""]

    assert main([*argv, "--output", str(tmp_path / "res.json")]) == 0
    records = json.loads((tmp_path / "res.json").read_text())
    assert [r["sku"] for r in records] == ["a", "b"]
    assert records[0]["cut_path"] == excel.loc[0, "cut_path"]

    assert main([*argv, "--output", str(tmp_path / "res.parquet")]) == 0
    assert (
        pd.read_parquet(tmp_path / "res.parquet")["cut_path"].tolist() == excel["cut_path"].tolist()
    )
    capsys.readouterr()


def test_an_unknown_output_format_is_refused_before_any_work(job, capsys):
    tmp_path, _, argv = job
    for name in ("res.txt", "results"):
        out = tmp_path / "o"
        assert main([*argv, "--out", str(out), "--output", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert "unknown table format" in err and ".csv, .parquet, .pq, .json, .xlsx" in err
        assert not out.exists() and uploads(tmp_path) == []


def test_excel_without_openpyxl_is_refused_before_any_work(job):
    """As where the excel extra is not installed: the import of openpyxl fails."""
    tmp_path, _, argv = job
    script = (
        "import sys; sys.modules['openpyxl'] = None\n"
        "from bgcut_nb.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    out = tmp_path / "o"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            *argv,
            "--out",
            str(out),
            "--output",
            str(tmp_path / "r.xlsx"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "Excel needs the excel extra" in run.stderr and "pip install -e '.[excel]'" in run.stderr
    assert not out.exists() and uploads(tmp_path) == []


# -- out_dir that is not a folder ----------------------------------------------------------------
def test_an_out_dir_that_is_a_file_is_refused_before_any_row_is_paid(
    tmp_path, bgcut_server, capsys
):
    photos = make_photos(tmp_path / "photos", 2)
    df = pd.DataFrame({"path": [str(p) for p in photos]})
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    backend = RemoteBackend(TEST_KEY, bgcut_server.base_url)
    for out_dir in (blocker, blocker / "cutouts"):
        with pytest.raises(ValueError, match=f"out_dir {out_dir} .*not a folder"):
            df.bgcut.process(ONE, out_dir=out_dir, backend=backend, progress=False)
    assert bgcut_server.stats["upload"] == bgcut_server.stats["process"] == 0
    assert bgcut_server.credits(TEST_KEY) == 100.0
    backend.close()

    csv = tmp_path / "list.csv"
    df.to_csv(csv, index=False)
    variants = tmp_path / "v.json"
    variants.write_text(json.dumps(ONE))
    argv = ["process", str(csv), "--variants", str(variants), "--no-progress"]
    assert main([*argv, "--out", str(blocker)]) == 2
    assert f"--out {blocker} is a file, not a folder" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "o"), "--output", str(blocker / "r.csv")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert uploads(tmp_path) == [] and not (tmp_path / "o").exists()


# -- inputs over the size limit ------------------------------------------------------------------
def test_estimate_does_not_bill_an_input_processing_refuses(tmp_path, bgcut_server):
    big = tmp_path / "huge.png"
    big.write_bytes(oversized_png())
    photo = make_photos(tmp_path / "photos", 1)[0]
    df = pd.DataFrame({"path": [str(photo), str(big)]}, index=["ok", "huge"])
    backend = RemoteBackend(TEST_KEY, bgcut_server.base_url)
    with pytest.warns(EstimateWarning, match=r"row 'huge': too large \(12000 x 12000"):
        credits = df.bgcut.estimate_credits(ONE, backend=backend, cache=False)
    single = pd.DataFrame({"path": [str(photo)]}).bgcut.estimate_credits(
        ONE, backend=backend, cache=False
    )
    assert credits == single > 0
    # and processing does refuse it, free of charge
    out = df.bgcut.process(
        ONE, out_dir=tmp_path / "o", backend=backend, cache=False, progress=False
    )
    assert out.loc["ok", "bgcut_error"] == "" and "too large" in out.loc["huge", "bgcut_error"]
    assert bgcut_server.credits(TEST_KEY) == 100.0 - single
    backend.close()


PREVIEW = """
import sys, warnings
import pandas as pd
warnings.simplefilter("error")  # Pillow's DecompressionBombWarning included
from bgcut_nb.notebook.widgets import preview

frame = pd.DataFrame({"path": [sys.argv[1]], "cut_path": [None], "cut_url": [None],
                      "bgcut_error": ["InvalidImageError: 400: Image too large"]})
viewer = preview(frame)
original = viewer.cards.children[0].children[2].value
print(original)
status = open("/proc/self/status").read()  # VmHWM: this process's peak, unlike ru_maxrss,
print(int(status.split("VmHWM:")[1].split()[0]) // 1024)  # which keeps the parent's after exec
"""


def test_preview_of_an_oversized_image_decodes_nothing(tmp_path):
    big = tmp_path / "huge.png"
    big.write_bytes(oversized_png())
    run = subprocess.run(
        [sys.executable, "-c", PREVIEW, str(big)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    note, peak_mb = run.stdout.strip().splitlines()[-2:]
    assert "too large to preview (12000x12000)" in note
    assert int(peak_mb) < 400  # decoding the 144 MP took over 1 GB


# -- Ctrl-C on the command line ------------------------------------------------------------------
@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt, as in a terminal (see tests/test_batch.py)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_writes_the_partial_results_and_says_how_to_resume(tmp_path, capsys, ctrl_c_raises):
    photos = make_photos(tmp_path / "in", 15, size=(480, 360))  # 15 distinct photos
    csv = tmp_path / "in" / "list.csv"
    pd.DataFrame({"image": [p.name for p in photos]}).to_csv(csv, index=False)
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps([{"variant_name": "cut", "quality": "medium"}]))
    out, cache = tmp_path / "out", tmp_path / "c"
    argv = ["process", str(csv), "--variants", str(variants), "--out", str(out)]
    argv += ["--cache-dir", str(cache), "--workers", "1", "--no-progress"]

    def press_ctrl_c() -> None:  # once two rows are done, as a user would
        deadline = time.monotonic() + 120
        while len(list((out / "cut").glob("*.png"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    assert main(argv) == 130
    presser.join()
    err = capsys.readouterr().err
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    finished = int((table["bgcut_error"] == "").sum())
    assert len(table) == 15 and 2 <= finished < 15
    assert set(table["bgcut_error"][finished:]) == {
        "not attempted: the batch was interrupted (Ctrl-C)"
    }
    assert "interrupted (Ctrl-C)" in err
    assert f"15 rows: {finished} done, 0 cached, 0 failed, {15 - finished} not attempted" in err
    assert "run the same command again to resume" in err

    assert main(argv) == 0  # the re-run resumes: finished rows come from the cache
    assert f"15 rows: {15 - finished} done, {finished} cached" in capsys.readouterr().err


# -- counts in plain English ---------------------------------------------------------------------
def test_one_row_is_one_row(job, capsys):
    tmp_path, csv, argv = job
    bad = tmp_path / "in" / "bad.csv"
    pd.DataFrame({"image": ["missing.jpg", "photo0.jpg"]}).to_csv(bad, index=False)
    argv = [argv[0], str(bad), *argv[2:], "--out", str(tmp_path / "o")]
    assert main([*argv, "--errors", "raise", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "0 finished rows are kept (and cached), 1 row was not attempted." in err
    assert "2 rows: 0 done, 0 cached, 1 failed, 1 not attempted" in err
    one = tmp_path / "in" / "one.csv"
    pd.DataFrame({"image": ["photo0.jpg"]}).to_csv(one, index=False)
    assert main([argv[0], str(one), *argv[2:]]) == 0
    assert "1 row: 1 done" in capsys.readouterr().err
