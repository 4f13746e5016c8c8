"""One exception tree: every error class of the package is defined in ``contract/errors.py``,
derives from ``BgcutError``, and (but for the server's own) is importable from ``bgcut_nb``."""

from __future__ import annotations

import ast
import importlib
import pickle
from pathlib import Path

import bgcut_nb
from bgcut_nb.contract import errors

PACKAGE = Path(bgcut_nb.__file__).parent


def defined_classes() -> list[tuple[str, type]]:
    """``(module, class)`` for every class statement at the top level of a package module
    (read with ``ast``, so a class imported from elsewhere is not counted twice)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py":  # runs the command line when imported
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text())
        classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
        if classes:
            module = importlib.import_module(name)
            found += [(name, getattr(module, cls)) for cls in classes]
    return found


def test_every_error_is_defined_in_contract_errors_under_bgcut_error():
    stray, outside = [], []
    for module, cls in defined_classes():
        if not issubclass(cls, BaseException) or issubclass(cls, Warning):
            continue  # warnings are categories for the warnings module, not errors
        if cls.__name__.startswith("_"):
            continue  # private control flow, caught where it is raised (never reaches a user)
        if module != errors.__name__:
            stray.append(f"{module}.{cls.__name__}")
        elif not issubclass(cls, errors.BgcutError):
            outside.append(cls.__name__)
    assert not stray, f"define these in bgcut_nb/contract/errors.py: {stray}"
    assert not outside, f"these do not derive from BgcutError: {outside}"


def test_the_tree_is_exported_and_documented():
    tree = [
        getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)
    ]
    assert tree and all(issubclass(cls, errors.BgcutError) for cls in tree)
    for cls in tree:
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} is missing from the drawn tree"
        if not issubclass(cls, errors.ServerError):
            assert getattr(bgcut_nb, cls.__name__, None) is cls, cls.__name__
            assert cls.__name__ in bgcut_nb.__all__


def test_the_old_homes_still_import_the_same_classes():
    from bgcut_nb.backends.remote import APIConnectionError
    from bgcut_nb.batch.columns import ImageColumnError
    from bgcut_nb.batch.runner import BatchError
    from bgcut_nb.dataset.canvas import CanvasError, ImageReadError
    from bgcut_nb.dataset.exports import MaskError
    from bgcut_nb.dataset.presets import PresetError
    from bgcut_nb.notebook.widgets import ImageTooLarge
    from bgcut_nb.server.ledger import QuotaExceeded
    from bgcut_nb.server.pool import ServerBusyError

    moved = [APIConnectionError, CanvasError, ImageReadError, MaskError, PresetError]
    moved += [BatchError, ImageColumnError, ImageTooLarge, QuotaExceeded, ServerBusyError]
    assert all(cls is getattr(errors, cls.__name__) for cls in moved)


def test_the_moved_errors_keep_their_behaviour():
    err = pickle.loads(pickle.dumps(errors.APIConnectionError("x", maybe_processed=True)))
    assert err.maybe_processed and str(err) == "x"
    assert issubclass(errors.ServerBusyError, errors.RateLimitError)
    assert errors.ServerBusyError("busy", retry_after=2).status == 429
    assert isinstance(errors.PresetError("bgcut: unknown preset"), KeyError)
    assert str(errors.PresetError("bgcut: unknown preset")) == "bgcut: unknown preset"
    assert isinstance(errors.MaskError("no mask"), ValueError)
    quota = errors.QuotaExceeded("bytes", 10.0)
    assert (quota.kind, quota.limit, quota.retry_after) == ("bytes", 10.0, None)
    assert str(quota) == "bytes"
