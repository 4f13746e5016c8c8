"""Acceptance: the spec's own Python examples run against the project's server.

Both scripts are taken from ``../shared/spec/*.txt`` at test time and changed only in
``API_KEY``, ``API_BASE`` and the input photo's path. The text dump of the "Image Reuse" page
lost the code's indentation; it is restored mechanically (4 spaces per open bracket and per
``with`` block holding one statement), and that restorer is checked against the first page,
whose code kept its indentation.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from bgcut_nb.testing.server import ServerThread

SPEC_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "spec"
KEY = "spec-example-key"


def _spec_page(title: str) -> str:
    if not SPEC_DIR.is_dir():
        pytest.skip(f"the API spec pages are not beside the repo ({SPEC_DIR} is absent)")
    for page in sorted(SPEC_DIR.glob("*.txt")):
        text = page.read_text(encoding="utf-8")
        if text.startswith(title):
            return text
    pytest.skip(f"no spec page titled {title!r} in {SPEC_DIR}")


def _code(text: str, end_marker: str) -> str:
    """The Python example: from ``import requests`` up to ``end_marker``."""
    start = text.index("import requests")
    return text[start : text.index(end_marker, start)].strip() + "\n"


def _bracket_delta(line: str) -> tuple[int, int]:
    """(net bracket depth change, closing brackets leading the line), skipping strings/comments."""
    depth, quote, escaped = 0, None, False
    stripped = line.strip()
    leading = len(stripped) - len(stripped.lstrip(")]}"))
    for ch in stripped:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            break
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth, leading


def reindent(code: str) -> str:
    """Restore indentation: one level per open bracket and per one-statement ``with`` block."""
    out, depth, block = [], 0, 0
    for raw in code.splitlines():
        line = raw.strip()
        delta, leading = _bracket_delta(line)
        out.append("    " * (block + depth - leading) + line if line else "")
        depth += delta
        if depth == 0 and line and not line.startswith("#"):
            if line.endswith(":"):
                block += 1  # a block header
            elif block:
                block -= 1  # the block's one statement is complete
    return "\n".join(out) + "\n"


def _adapt(code: str, base_url: str, photo: Path) -> str:
    code, n_key = re.subn(r'^API_KEY = ".*"$', f'API_KEY = "{KEY}"', code, flags=re.M)
    code, n_base = re.subn(r'^API_BASE = ".*"$', f'API_BASE = "{base_url}"', code, flags=re.M)
    code, n_photo = re.subn(r'open\("photo\.jpg"', f"open({str(photo)!r}", code)
    assert (n_key, n_base, n_photo) == (1, 1, 1), "the spec example changed shape"
    return code


def _run(code: str, tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    printed = {}
    for line in done.stdout.splitlines():
        label, _, value = line.partition(":")
        printed[label.strip()] = value.strip()
    return printed


def _download(url: str) -> Image.Image:
    assert url.startswith("http://127.0.0.1:")
    answer = requests.get(url, timeout=60)
    assert answer.status_code == 200
    image = Image.open(io.BytesIO(answer.content))
    image.load()
    return image


@pytest.fixture
def photo(tmp_path, bgcut_photo) -> Path:
    path = tmp_path / "my-photo.jpg"
    path.write_bytes(bgcut_photo(480, 360))
    return path


def test_reindent_restores_the_first_pages_indentation():
    original = _code(_spec_page("Remove Background: Multiple Variants"), "\nResponse\n")
    flattened = "\n".join(line.strip() for line in original.splitlines()) + "\n"
    assert flattened != original
    assert reindent(flattened) == original


def test_multiple_variants_example(bgcut_engine, tmp_path, photo):
    code = _code(_spec_page("Remove Background: Multiple Variants"), "\nResponse\n")
    with ServerThread({KEY: 10}, tmp_path / "srv", backend=bgcut_engine) as server:
        printed = _run(_adapt(code, server.base_url, photo), tmp_path)
        full = _download(printed["Full PNG"])
        thumb = _download(printed["Thumbnail"])
        white = _download(printed["White BG"])
        assert server.credits(KEY) == 10 - 3.5  # three variants, one autocropped
    assert full.format == "PNG" and full.mode == "RGBA" and full.size == (480, 360)
    assert thumb.format == "WEBP" and thumb.mode == "RGBA"
    assert white.format == "JPEG" and white.mode == "RGB" and white.size == (480, 360)
    assert (np.asarray(white)[2, 2] >= 245).all()


def test_image_reuse_example(bgcut_engine, tmp_path, photo):
    code = _code(_spec_page("Remove Background: Image Reuse"), "Process Response")
    code = reindent(code)
    compile(code, "image-reuse-example", "exec")
    with ServerThread({KEY: 10}, tmp_path / "srv", backend=bgcut_engine) as server:
        printed = _run(_adapt(code, server.base_url, photo), tmp_path)
        initial = _download(printed["Initial"])
        high_res = _download(printed["High res"])
        red = _download(printed["Red BG"])
        assert server.stats["upload"] == 1 and server.stats["process"] == 2
        assert server.credits(KEY) == 10 - 1 - 2.5
    assert printed["unique_filename"]
    assert initial.format == "PNG" and initial.mode == "RGBA"
    assert high_res.format == "PNG" and high_res.mode == "RGBA"
    assert red.format == "JPEG" and red.mode == "RGB"
    assert np.abs(np.asarray(red, dtype=np.int16)[2, 2] - (0xFF, 0x57, 0x33)).max() < 12
