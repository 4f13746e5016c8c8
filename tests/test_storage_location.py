"""The local engine keeps its uploads, mattes and outputs in the cache folder a call names:
``cache=<dir>``, a ``ReuseCache``, ``BGCUT_CACHE_DIR`` or ``--cache-dir``; with ``cache=False``
or ``--no-cache`` in a temporary folder removed when the process exits. Nothing else is
written, not even into ``HOME``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from notebook_support import LOW_VARIANTS, REPO, make_photos

import bgcut_nb  # noqa: F401 - registers the accessors
from bgcut_nb import ReuseCache
from bgcut_nb.cli import main
from bgcut_nb.core.config import resolve_model_dir
from bgcut_nb.notebook.accessor import local_storage_dir

pytestmark = pytest.mark.usefixtures("bgcut_isolated_env")  # BGCUT_CACHE_DIR = tmp/cache

ONE = LOW_VARIANTS[:1]


def uploads(cache_dir: Path) -> list[Path]:
    """The local engine's upload folders kept under ``cache_dir``."""
    folder = cache_dir / "local-engine" / "uploads"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_the_cache_argument_moves_the_engine_storage(tmp_path):
    photos = make_photos(tmp_path / "photos", 2)
    df = pd.DataFrame({"path": [str(p) for p in photos]})
    mine = tmp_path / "mine"
    out = df.bgcut.process(ONE, out_dir=tmp_path / "out", cache=mine, progress=False)
    assert (out["bgcut_error"] == "").all()
    assert out.attrs["bgcut"]["backend"] == f"local:{(mine / 'local-engine').resolve()}"
    kept = uploads(mine)
    assert len(kept) == 2
    for folder in kept:  # the input copy, its matte and the output, all in the cache folder
        assert {p.name for p in folder.iterdir()} >= {"input.jpg", "meta.json", "outputs"}
        assert list(folder.glob("matte-low*.npz")) and list(folder.glob("outputs/*/cut.png"))
    assert uploads(tmp_path / "cache") == []  # BGCUT_CACHE_DIR was not used
    # the estimate looks in the same place: everything is done, nothing to pay
    assert df.bgcut.estimate_credits(ONE, cache=mine) == 0.0

    other = ReuseCache(tmp_path / "object")
    again = df.bgcut.process(ONE, out_dir=tmp_path / "out", cache=other, progress=False)
    assert (again["bgcut_error"] == "").all() and len(uploads(tmp_path / "object")) == 2
    other.close()


def test_no_cache_keeps_the_engine_storage_in_a_temporary_folder(tmp_path):
    scratch = local_storage_dir(False)
    assert scratch.is_relative_to(Path(tempfile.gettempdir()).resolve())
    before = {p.name for p in (scratch / "uploads").glob("*")}
    df = pd.DataFrame({"path": [str(make_photos(tmp_path / "photos", 1)[0])]})
    out = df.bgcut.process(ONE, out_dir=tmp_path / "out", cache=False, progress=False)
    assert out.loc[0, "bgcut_error"] == ""
    assert out.attrs["bgcut"]["backend"] == f"local:{scratch}"
    assert len({p.name for p in (scratch / "uploads").glob("*")} - before) == 1
    assert not (tmp_path / "cache").exists()


def test_the_command_line_cache_options_move_the_engine_storage(tmp_path, capsys):
    photos = make_photos(tmp_path / "in", 2)
    csv = tmp_path / "in" / "list.csv"
    pd.DataFrame({"image": [p.name for p in photos]}).to_csv(csv, index=False)
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps(ONE))
    argv = ["process", str(csv), "--variants", str(variants), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "dir")]) == 0
    assert len(uploads(tmp_path / "dir")) == 2 and (tmp_path / "dir" / "cache.db").is_file()
    assert main([*argv, "--out", str(tmp_path / "b"), "--no-cache"]) == 0
    assert "2 done, 0 cached" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # neither BGCUT_CACHE_DIR
    assert len(uploads(tmp_path / "dir")) == 2  # nor the other run's folder


SCRIPT = """
import sys
import pandas as pd
import bgcut_nb
from bgcut_nb.notebook.accessor import local_storage_dir

df = pd.DataFrame({"path": [sys.argv[1]]})
variants = [{"variant_name": "cut", "quality": "low", "max_resolution": 20_000}]
for cache in (sys.argv[2], False):
    out = df.bgcut.process(variants, out_dir=sys.argv[3], cache=cache, progress=False)
    assert out.loc[0, "bgcut_error"] == "", out.loc[0, "bgcut_error"]
print(local_storage_dir(False))
"""


def test_a_process_writes_only_its_cache_and_out_dir_and_cleans_its_temporary_folder(tmp_path):
    home, cache, out = tmp_path / "home", tmp_path / "cache-arg", tmp_path / "out"
    home.mkdir()
    photo = make_photos(tmp_path / "photos", 1)[0]
    cleared = ("BGCUT_CACHE_DIR", "BGCUT_API_KEY", "ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    env.update(HOME=str(home), BGCUT_MODEL_DIR=str(resolve_model_dir().resolve()))
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(photo), str(cache), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    scratch = Path(run.stdout.strip().splitlines()[-1])
    assert scratch.name.startswith("bgcut-local-engine-") and not scratch.exists()
    assert len(uploads(cache)) == 1
    assert sorted(p.name for p in out.iterdir()) == ["cut"]
    assert list(home.rglob("*")) == []  # no ~/.cache/bgcut-nb, nor ONNX Runtime's telemetry
