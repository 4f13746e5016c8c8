"""The review widget on a large table: opening it, and the time per decision.

    python benchmarks/review.py [--rows 2000] [--source DIR]

Drafts the photos of ``../shared/bench/photos`` (or ``--source``) once with the local engine
(quality low), then builds a table of ``--rows`` rows whose originals are distinct files (the
source photos with a row number appended after the image data, so every row has its own
SHA-256) and whose drafts are those outputs. Prints the seconds to:

1. open the widget on a fresh cache (every original read and hashed once, decisions looked up);
2. open it again (file hashes remembered by path, size and modification time);
3. approve or reject a row by key (the decision saved, the next row's three images rendered),
   the mean over 100 keys;
4. read all decisions back with ``df.bgcut.reviewed`` in a new cache handle.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

import bgcut_nb  # noqa: F401 - registers df.bgcut
from bgcut_nb import ReuseCache

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "photos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--source", type=Path, default=SHARED)
    args = parser.parse_args()
    sources = sorted(
        p for p in args.source.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    if not sources:
        raise SystemExit(f"no photos in {args.source}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frame = pd.DataFrame({"path": [str(p) for p in sources]})
        started = time.perf_counter()
        draft = frame.bgcut.process(
            [{"variant_name": "cutout", "quality": "low"}],
            draft=True,
            backend="local",
            cache=root / "draft-cache",
            out_dir=root / "out",
            progress=False,
        )
        print(f"drafts of {len(sources)} photos: {time.perf_counter() - started:.1f} s")
        rows = []
        for i in range(args.rows):
            k = i % len(sources)
            copy = root / "rows" / f"{i:05d}{sources[k].suffix}"
            copy.parent.mkdir(exist_ok=True)
            shutil.copyfile(sources[k], copy)
            with copy.open("ab") as fh:
                fh.write(f"row {i}".encode())  # after the image data: decoders ignore it
            rows.append({"path": str(copy), "cutout_url": "", "cutout_path": draft.cutout_path[k]})
        table = pd.DataFrame(rows).assign(bgcut_error="")
        megabytes = sum(Path(p).stat().st_size for p in table.path) / 1e6
        cache_dir = root / "cache"

        started = time.perf_counter()
        widget = table.bgcut.review("cutout", cache=ReuseCache(cache_dir))
        cold = time.perf_counter() - started
        started = time.perf_counter()
        widget = table.bgcut.review("cutout", cache=ReuseCache(cache_dir))
        warm = time.perf_counter() - started
        keys = 100
        started = time.perf_counter()
        for i in range(keys):
            widget.handle_key({"event": "keydown", "key": "a" if i % 3 else "r"})
        per_key = (time.perf_counter() - started) / keys
        started = time.perf_counter()
        decisions = table.bgcut.reviewed("cutout", cache=ReuseCache(cache_dir))["bgcut_review"]
        read_back = time.perf_counter() - started
        assert (decisions != "").sum() == keys, decisions.value_counts()
        print(f"{args.rows} rows, {megabytes:.0f} MB of originals")
        print(f"open, fresh cache (hash every original): {cold:.2f} s")
        print(f"open again (hashes remembered):          {warm:.2f} s")
        print(f"one decision by key (save + next row):   {per_key * 1000:.0f} ms")
        print(f"reviewed() in a new cache handle:        {read_back:.2f} s")
        print(widget.progress.value)


if __name__ == "__main__":
    main()
