"""The shipped notebooks, executed top to bottom in a real Jupyter kernel (nbclient).

Each notebook runs in a copy of the repository's layout (``notebooks/`` beside ``data/``) under
a temporary directory, on a kernelspec that points at this test run's Python, with its own
``BGCUT_CACHE_DIR``, IPython profile and Jupyter runtime folder (nothing lands in ``HOME``). A
probe cell appended at the end reports what the notebook produced.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from notebook_support import DATA, REPO
from PIL import Image

KERNEL = "bgcut-nb-test"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """``tmp/notebooks`` + ``tmp/data``, a kernelspec for this Python, an empty cache."""
    from ipykernel.kernelspec import write_kernel_spec

    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    shutil.copytree(DATA, tmp_path / "data")
    kernels = tmp_path / "jupyter" / "kernels"
    write_kernel_spec(kernels / KERNEL)  # argv[0] is sys.executable
    spec = json.loads((kernels / KERNEL / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # the kernel's IPython profile and connection files: here, not in the user's home
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("BGCUT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BGCUT_API_KEY", raising=False)
    return tmp_path


def execute(workspace: Path, name: str, probe: str) -> tuple[nbformat.NotebookNode, dict]:
    """Run ``notebooks/<name>.ipynb`` plus a probe cell that prints one JSON line."""
    path = workspace / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=600,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    texts = [o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream"]
    report = json.loads("".join(texts).strip().splitlines()[-1])
    assert report["executable"] == sys.executable  # the kernel really is this venv's Python
    return nb, report


def outputs_of(nb, source_start: str) -> list:
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(source_start):
            return cell.outputs
    raise AssertionError(f"no cell starting with {source_start!r}")


def test_quickstart_notebook(workspace):
    probe = """import json, sys
print(json.dumps({
    "executable": sys.executable,
    "paths": out[["cutout_path", "white_bg_path"]].values.tolist(),
    "errors": out["bgcut_error"].tolist(),
    "stats": out.bgcut.stats,
    "cache_dir": bgcut_nb.batch.reuse.default_cache().stats()["directory"],
}))"""
    nb, report = execute(workspace, "quickstart", probe)
    assert report["errors"] == ["", "", "", ""]
    assert report["stats"]["done"] == 4 and report["stats"]["process_calls"] == 4
    assert report["cache_dir"] == str(workspace / "cache")
    out_dir = (workspace / "output" / "notebooks").resolve()
    for cutout, white in report["paths"]:
        assert Path(cutout).is_relative_to(out_dir / "cutout")
        with Image.open(cutout) as img:
            assert img.format == "PNG" and img.mode == "RGBA"
            assert img.width * img.height <= 250_000
            alpha = np.asarray(img.getchannel("A"))
        assert (alpha == 0).mean() > 0.05 and (alpha > 128).mean() > 0.01  # a real cut-out
        with Image.open(white) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
    # in Jupyter the progress bar is a widget (tqdm.auto), not text on stderr
    progress = outputs_of(nb, "variants = [")
    assert any(WIDGET_MIME in o.get("data", {}) for o in progress)
    assert not any(o.get("name") == "stderr" and "row/s" in o.get("text", "") for o in progress)
    # the preview and gallery cells displayed widgets
    for cell in ("out.bgcut.preview()", 'out.bgcut.gallery("cutout")'):
        assert any(WIDGET_MIME in o.get("data", {}) for o in outputs_of(nb, cell))
    # the last cell: a re-run would cost nothing
    printed = "".join(o.get("text", "") for o in outputs_of(nb, "print(out.bgcut.stats)"))
    assert "credits to run it again: 0.0" in printed


def test_reuse_notebook(workspace):
    probe = """import json, sys
print(json.dumps({
    "executable": sys.executable,
    "first": first.bgcut.stats,
    "again": again.bgcut.stats,
    "later": later.bgcut.stats,
    "cost": cost,
    "thumbs": later["thumb_path"].tolist(),
    "cache": cache.stats(),
}))"""
    nb, report = execute(workspace, "reuse", probe)
    first, again, later = report["first"], report["again"], report["later"]
    assert (first["uploads"], first["process_calls"]) == (4, 4)
    assert (again["uploads"], again["process_calls"], again["cached"]) == (0, 0, 4)
    assert (later["uploads"], later["uploads_reused"], later["process_calls"]) == (0, 4, 4)
    assert (later["outputs_rendered"], later["outputs_reused"]) == (8, 4)
    assert report["cost"] == 4 * (1.0 + 1.5)
    assert report["cache"]["uploads"] == 4 and report["cache"]["outputs"] == 12
    same_ids = outputs_of(nb, "# the same unique_filename")[0]["data"]["text/plain"]
    assert same_ids == "np.True_" or same_ids == "True"
    for path in report["thumbs"]:
        with Image.open(path) as img:
            assert img.format == "WEBP" and img.width * img.height <= 10_000
    assert any(WIDGET_MIME in o.get("data", {}) for o in outputs_of(nb, "later.bgcut.preview()"))


def test_interrupting_the_kernel_keeps_finished_rows_and_a_rerun_resumes(workspace):
    """Jupyter's interrupt (SIGINT to the kernel) during df.bgcut.process, then a re-run."""
    from notebook_support import make_photos

    make_photos(workspace / "many", 8)
    out_dir = workspace / "out"
    cells = [
        "import pandas as pd, threading, bgcut_nb\n"
        "df = pd.DataFrame({'path': [f'../many/photo{i}.jpg' for i in range(8)]})\n"
        "v = [{'variant_name': 'cut', 'quality': 'low', 'max_resolution': 20000}]",
        f"df.bgcut.process(v, out_dir={str(out_dir)!r}, max_workers=1)",
        "import json\n"
        f"again = df.bgcut.process(v, out_dir={str(out_dir)!r}, progress=False)\n"
        "print(json.dumps({'stats': again.bgcut.stats, 'errors': again.bgcut_error.tolist(),\n"
        "  'threads': [t.name for t in threading.enumerate() if t.name.startswith('bgcut')]}))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=600,
        allow_errors=True,
        resources={"metadata": {"path": str(workspace / "notebooks")}},
    )
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        stop = threading.Event()

        def press_ctrl_c() -> None:  # once the first row's output exists
            while not stop.is_set():
                if list(out_dir.rglob("*.png")):
                    os.kill(client.km.provisioner.pid, signal.SIGINT)  # what Jupyter does
                    return
                time.sleep(0.02)

        watcher = threading.Thread(target=press_ctrl_c, daemon=True)
        watcher.start()
        client.execute_cell(nb.cells[1], 1)
        stop.set()
        watcher.join(5)
        client.execute_cell(nb.cells[2], 2)
    errors = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert errors and errors[0]["ename"] == "KeyboardInterrupt"
    assert "run the same call again to resume" in errors[0]["evalue"]
    text = "".join(o.get("text", "") for o in nb.cells[2].outputs if o.output_type == "stream")
    report = json.loads(text.strip().splitlines()[-1])
    s = report["stats"]
    assert report["errors"] == [""] * 8 and report["threads"] == []
    assert 1 <= s["cached"] < 8  # rows finished before the interrupt were kept
    assert s["done"] == s["process_calls"] == 8 - s["cached"]
    assert s["uploads"] + s["uploads_reused"] == s["done"]
