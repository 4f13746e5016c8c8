"""The batch's progress bar: every state it draws counts the row it has just stepped over."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from notebook_support import make_photos

#: One drawn state of the bar: ``3/5 [00:01<00:00, 3.5row/s, cached=0, done=2, failed=1]``.
STATE = re.compile(r"(\d+)/(\d+) \[[^\]]*?cached=(\d+), done=(\d+), failed=(\d+)\]")

#: Run in a fresh interpreter: tqdm reads ``TQDM_MININTERVAL`` when it is first imported, so
#: the settings that make it draw on every step must be there before that.
BATCH = """
import sys
import pandas as pd
from fake_backend import FakeBackend
from notebook_support import LOW_VARIANTS
import bgcut_nb
tmp = sys.argv[1]
paths = sys.argv[2:]
out = pd.DataFrame({"path": paths}).bgcut.process(
    LOW_VARIANTS, out_dir=tmp + "/out", backend=FakeBackend(), cache=tmp + "/cache",
    max_workers=1,
)
assert out.bgcut.stats["failed"] == 1, out.bgcut.stats
"""


def test_the_bar_never_shows_the_previous_rows_counts(tmp_path):
    photos = make_photos(tmp_path / "p", 3)
    paths = [str(photos[0]), str(tmp_path / "missing.jpg"), str(photos[1]), str(photos[2])]
    env = {k: v for k, v in os.environ.items() if k != "BGCUT_API_KEY"}
    env.update(TQDM_MININTERVAL="0", TQDM_MINITERS="1")  # draw on every step, however fast
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-c", BATCH, str(tmp_path), *paths],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    states = [tuple(map(int, m.groups())) for m in STATE.finditer(run.stderr)]
    stepped = [s for s in states if s[0] > 0]
    assert len(stepped) >= 4, states
    for n, total, cached, done, failed in stepped:
        assert total == 4
        assert cached + done + failed == n, states
