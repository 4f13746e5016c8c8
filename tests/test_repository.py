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


#: ``pip install`` and its arguments, up to the end of the line or of a Markdown code span.
_PIP_INSTALL = re.compile(r"pip3?\s+install((?:[ \t]+[^\s`]+)+)")
#: A requirement that names this project (from the index): ``bgcut-nb``, ``bgcut_nb[server]``...
_FROM_INDEX = re.compile(r"^bgcut[-_.]nb(\[[^\]]*\])?([<>=!~;@].*)?$", re.I)


def index_installs(text: str) -> list[str]:
    """Every ``pip install`` in ``text`` that asks the package index for bgcut-nb."""
    found = []
    for match in _PIP_INSTALL.finditer(text):
        tokens = [t.strip("'\"(),;") for t in match.group(1).split()]
        if any(_FROM_INDEX.match(t) for t in tokens):
            found.append(match.group(0).strip())
    return found


def test_the_checker_tells_an_index_install_from_a_checkout_install():
    assert index_installs('run pip install "bgcut-nb[server]" first')
    assert index_installs("`pip install 'bgcut_nb'`; python -m pip install -U bgcut-nb==0.1")
    assert index_installs('.venv/bin/pip install -e ".[server]" and pip install pyarrow') == []


def test_no_message_tells_users_to_install_bgcut_nb_from_the_index():
    """bgcut-nb is not on the package index: install hints must point at the checkout."""
    files = [*ROOT.glob("**/README.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("notebooks/*.ipynb")]
    files += [*(ROOT / "bgcut_nb").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    wrong = {
        str(path.relative_to(ROOT)): hits
        for path in files
        if ".venv" not in path.parts and (hits := index_installs(path.read_text()))
    }
    assert not wrong, wrong


def test_the_design_layout_names_every_module():
    """Each subpackage's row in docs/design.md "Layout" names each of its modules."""
    design = (ROOT / "docs" / "design.md").read_text()
    layout = design.split("\n## Layout\n")[1].split("\n## ")[0]
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `bgcut_nb/(\w+)/` \| (.+) \|$", layout, flags=re.M)
    }
    packages = sorted(p.parent.name for p in (ROOT / "bgcut_nb").glob("*/__init__.py"))
    assert sorted(rows) == packages
    for package in packages:
        for module in sorted((ROOT / "bgcut_nb" / package).glob("*.py")):
            if module.name != "__init__.py":
                assert f"`{module.name}`" in rows[package] or f"`{module.stem}`" in rows[package], (
                    f"docs/design.md Layout: bgcut_nb/{package}/{module.name} is not named"
                )


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of ``markdown`` (fenced code left out)."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    headings = re.findall(r"^#{1,6} +(.+?) *$", prose, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_links_between_the_readme_and_docs_resolve():
    """Every relative link in README.md and docs/*.md names a file that exists and, with
    ``#anchor``, a heading of that file."""
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked here
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_link_checker_knows_github_anchors():
    assert _anchors("## Review: draft locally, approve, pay\n```\n# not a heading\n```\n") == {
        "review-draft-locally-approve-pay"
    }
