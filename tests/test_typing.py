"""mypy (configured in pyproject.toml) is clean on the packages it holds to type hints."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The packages that must stay clean: the bottom layers and the engine, which the rest builds on.
CHECKED = ["bgcut_nb/contract", "bgcut_nb/core", "bgcut_nb/engine"]


def test_pyproject_configures_mypy_on_the_checked_packages():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert set(CHECKED) <= set(config["files"])


def test_mypy_is_clean(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it is in the [test] extra)")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache"), *CHECKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
