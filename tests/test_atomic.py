"""Atomic writes: whole files or none, with the permissions a plain ``open()`` gives them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest
from notebook_support import LOW_VARIANTS, local_backend, make_photos

import bgcut_nb  # noqa: F401 - registers df.bgcut
from bgcut_nb.cli import main
from bgcut_nb.core.atomic import atomic_write_bytes, atomic_write_text, atomic_writer


@pytest.fixture
def umask():
    """Set the process umask for one test: ``umask(0o022)``; the old one comes back after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path: str | os.PathLike[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077], ids=oct)
def test_helpers_give_the_mode_open_gives(tmp_path, umask, mask):
    umask(mask)
    with open(tmp_path / "plain", "wb") as fh:
        fh.write(b"x")
    atomic_write_bytes(tmp_path / "bytes", b"x")
    atomic_write_bytes(tmp_path / "chunks", iter([b"x", b"y"]))
    atomic_write_text(tmp_path / "text", "x")
    with atomic_writer(tmp_path / "writer") as fh:
        fh.write(b"x")
    assert mode(tmp_path / "plain") == 0o666 & ~mask
    for name in ("bytes", "chunks", "text", "writer"):
        assert mode(tmp_path / name) == 0o666 & ~mask, name
    assert (tmp_path / "chunks").read_bytes() == b"xy"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bytes", "chunks", "plain", "text", "writer",
    ]  # fmt: skip


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_writer(target) as fh:
        fh.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


def test_outputs_and_results_csv_are_readable_by_others(tmp_path, umask, monkeypatch):
    monkeypatch.delenv("BGCUT_API_KEY", raising=False)
    umask(0o022)
    photos = make_photos(tmp_path / "in", 2)
    backend = local_backend(tmp_path / "store")
    out = pd.DataFrame({"path": [str(p) for p in photos]}).bgcut.process(
        LOW_VARIANTS, backend=backend, cache=tmp_path / "cache", out_dir=tmp_path / "out",
        progress=False,
    )  # fmt: skip
    files = [*out["cut_path"], *out["white_path"]]
    assert len(files) == 4 and all(Path(f).is_file() for f in files)
    assert {mode(f) for f in files} == {0o644}

    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps(LOW_VARIANTS))
    csv = tmp_path / "in" / "list.csv"
    pd.DataFrame({"path": [p.name for p in photos]}).to_csv(csv, index=False)
    argv = ["process", str(csv), "--variants", str(variants), "--out", str(tmp_path / "cli")]
    assert main([*argv, "--no-progress", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert mode(tmp_path / "cli" / "results.csv") == 0o644
    assert {mode(p) for p in (tmp_path / "cli").rglob("*.*")} == {0o644}
