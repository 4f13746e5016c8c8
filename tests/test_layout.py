"""The package's layers: imports go one way (top uses bottom, never back) and form no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bgcut_nb

PACKAGE = Path(bgcut_nb.__file__).parent

#: What each layer may import, bottom first. The package root and ``cli`` may import anything.
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "contract": {"core", "contract"},
    "engine": {"core", "contract", "engine"},
    "backends": {"core", "contract", "engine", "backends"},
    "dataset": {"core", "contract", "dataset"},
    "batch": {"core", "contract", "backends", "dataset", "batch"},
    "notebook": {"core", "contract", "backends", "dataset", "batch", "notebook"},
    "server": {"core", "contract", "engine", "backends.local", "server"},
    "testing": {"core", "contract", "engine", "backends", "server", "testing"},
}

#: The test rigs (``testing``) sit beside the product, not in it: the only product module that
#: may import them is ``bgcut-nb serve``, for its drill flags (``--simulate``, ``--fault-*``).
MAY_IMPORT_TESTING = {"bgcut_nb.testing", "bgcut_nb.cli.serve"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every ``bgcut_nb`` module ``path`` imports, at module level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bgcut_nb")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("bgcut_nb"):
                target = node.module
            else:
                continue
            for alias in node.names:  # ``from .pkg import module`` names a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) & set(MODULES) for name, path in MODULES.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")[1:]
    return parts[0] if parts else None


def test_every_module_sits_in_a_layer():
    loose = [m for m in MODULES if m.count(".") == 1 and m not in {"bgcut_nb.__main__"}]
    assert all(MODULES[m].name == "__init__.py" for m in loose), loose


def test_imports_go_one_way():
    wrong = []
    for module, targets in GRAPH.items():
        allowed = ALLOWED.get(layer(module) or "")
        if allowed is None:
            continue
        for target in targets:
            sub = ".".join(target.split(".")[1:3])
            if layer(target) not in allowed and sub not in allowed:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_only_the_drill_flags_import_the_test_rigs():
    wrong = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if layer(module) != "testing" and module not in MAY_IMPORT_TESTING
        for target in targets
        if layer(target) == "testing"
    ]
    assert not wrong, "the product imports the test rigs:\n" + "\n".join(sorted(wrong))


def test_the_import_graph_has_no_cycles():
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if nxt == node or nxt == "bgcut_nb":
                continue
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(GRAPH):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_cycle_and_a_wrong_way_import():
    """The two checks above would notice a real violation (they read real imports)."""
    assert "bgcut_nb.contract.errors" in GRAPH["bgcut_nb.contract.variants"]
    assert "bgcut_nb.batch.columns" in GRAPH["bgcut_nb.notebook.widgets"]
    assert not any(t.startswith("bgcut_nb.notebook") for t in GRAPH["bgcut_nb.batch.runner"])
    assert "bgcut_nb.notebook.accessor" not in GRAPH["bgcut_nb.notebook.widgets"]


def test_the_version_has_one_source():
    from importlib.metadata import version

    assert bgcut_nb.__version__ == version("bgcut-nb")
    text = "\n".join(p.read_text() for p in MODULES.values())
    assert f'"{bgcut_nb.__version__}"' not in text


def test_import_and_serve_help_work_from_a_shell():
    assert subprocess.run([sys.executable, "-c", "import bgcut_nb"], check=False).returncode == 0
    exe = Path(sys.executable).parent / "bgcut-nb"
    out = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--api-key" in out.stdout
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and bgcut_nb.__version__ in version.stdout


def test_serve_help_keeps_the_drill_flags_under_their_own_heading():
    """The 11 drill flags (test rigs) read apart from the server's normal options."""
    exe = Path(sys.executable).parent / "bgcut-nb"
    out = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True).stdout
    normal, _, drills = out.partition("\ntesting and drills:\n")
    flags = ["--fault-rate", "--fault-kinds", "--fault-retry-after", "--fault-latency"]
    flags += ["--fault-seed", "--simulate", "--sim-process-seconds", "--sim-latency"]
    flags += ["--sim-seed", "--plan-rpm", "--plan-burst"]
    assert drills and all(f"  {flag} " in drills for flag in flags), out
    assert not [flag for flag in flags if f"  {flag} " in normal], normal
