"""The suite writes nothing outside its temporary folders: a representative part of it (the
quickstart, a batch through the accessor and the command line, the reuse notebook in a real
kernel, a remote batch with the default cache) runs in a subprocess whose ``HOME`` is an empty
folder, with only the models read from the real model folder, and ``HOME`` must stay empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from notebook_support import REPO

from bgcut_nb.core.config import resolve_model_dir

#: Tests that exercise every default location the project writes to (cache, local engine,
#: notebook kernels), each with the fixtures the rest of the suite uses. (tests/test_browser.py
#: keeps JupyterLab, Chromium and Playwright in a HOME of its own.)
REPRESENTATIVE = [
    "tests/test_quickstart.py::test_quickstart_writes_the_three_spec_variants_and_reruns_from_cache",
    "tests/test_accessor.py::test_default_backend_processes_offline",
    "tests/test_process_command.py::test_process_writes_the_same_columns_and_reuses_the_cache",
    "tests/test_throughput.py::test_a_fixed_max_workers_keeps_the_old_pool",
    "tests/test_notebooks.py::test_reuse_notebook",
]

#: Variables that would send files elsewhere than ``HOME``'s defaults, or decide the backend.
CLEARED = ("BGCUT_CACHE_DIR", "BGCUT_API_KEY", "BGCUT_API_BASE", "XDG_CACHE_HOME",
           "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
           "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR",
           "MPLCONFIGDIR")  # fmt: skip


def test_the_suite_leaves_home_untouched(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(HOME=str(home), BGCUT_MODEL_DIR=str(resolve_model_dir().resolve()))
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    command += ["--basetemp", str(tmp_path / "basetemp"), *REPRESENTATIVE]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert f"{len(REPRESENTATIVE)} passed" in run.stdout, run.stdout[-2000:]
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"the tests wrote into HOME: {written[:20]}"
    assert not [p for p in Path(tmp_path / "tmp").iterdir() if p.name.startswith("bgcut-")]
