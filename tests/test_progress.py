"""The batch's progress bar: every state it draws counts the row it has just stepped over."""

from __future__ import annotations

import re

import pandas as pd
from fake_backend import FakeBackend
from notebook_support import LOW_VARIANTS, make_photos

import bgcut_nb  # noqa: F401 - registers the accessors

#: One drawn state of the bar: ``3/5 [00:01<00:00, 3.5row/s, cached=0, done=2, failed=1]``.
STATE = re.compile(r"(\d+)/(\d+) \[[^\]]*?cached=(\d+), done=(\d+), failed=(\d+)\]")


def test_the_bar_never_shows_the_previous_rows_counts(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BGCUT_API_KEY", raising=False)
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # draw on every step, however fast the rows
    monkeypatch.setenv("TQDM_MINITERS", "1")
    photos = make_photos(tmp_path / "p", 3)
    paths = [str(photos[0]), str(tmp_path / "missing.jpg"), str(photos[1]), str(photos[2])]
    out = pd.DataFrame({"path": paths}).bgcut.process(
        LOW_VARIANTS,
        out_dir=tmp_path / "out",
        backend=FakeBackend(),
        cache=tmp_path / "cache",
        max_workers=1,
    )
    assert out.bgcut.stats["failed"] == 1
    err = capsys.readouterr().err
    states = [tuple(map(int, m.groups())) for m in STATE.finditer(err)]
    stepped = [s for s in states if s[0] > 0]
    assert len(stepped) >= 4, states
    for n, total, cached, done, failed in stepped:
        assert total == 4
        assert cached + done + failed == n, states
