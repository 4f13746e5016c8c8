"""Repository hygiene: the README's two commands, CI running the test one, ruff clean."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:bash|sh|console)?\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n## ")[0]
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.+?)\n```", head, flags=re.S)
    assert len(blocks) == 2, "the README opens with exactly two commands"
    quickstart, tests = blocks
    assert "bgcut-nb quickstart" in quickstart and "\n" not in quickstart
    assert "pytest" in tests and "\n" not in tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (it is in the [test] extra)")
    return [exe]


def test_ruff_check_is_clean():
    result = subprocess.run([*ruff(), "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = subprocess.run(
        [*ruff(), "format", "--check", str(ROOT)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
