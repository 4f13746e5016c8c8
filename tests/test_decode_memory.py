"""Memory per decode: uploads validated from the header, 16-bit/float greyscale to 8-bit in bands.

The big-image checks run in a subprocess and read its peak RSS (``ru_maxrss``), so Pillow's C
allocations count; the bounds leave a wide margin over what the fix needs and sit far below
what a full-frame or float64 decode takes (about 1.8 GB for the 8000 x 8000 16-bit PNG).
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bgcut_nb.contract.errors import InvalidImageError
from bgcut_nb.engine.imaging import decode_image, inspect_image, load_image

SIDE = 8000

_MEASURE = """
import resource, sys
from pathlib import Path
from bgcut_nb.backends.local import LocalBackend
from bgcut_nb.engine.imaging import decode_image
data = Path(sys.argv[2]).read_bytes()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "upload":
    LocalBackend(storage_dir=sys.argv[3]).upload_image(data)
else:
    decode_image(data, target_pixels=16_000_000)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""


@pytest.fixture(scope="module")
def big16(tmp_path_factory) -> str:
    row = (np.arange(SIDE, dtype=np.uint32) * 65535 // (SIDE - 1)).astype(np.uint16)
    image = Image.fromarray(np.ascontiguousarray(np.broadcast_to(row, (SIDE, SIDE))))
    path = tmp_path_factory.mktemp("big") / "big16.png"
    image.save(path, "PNG", compress_level=1)
    return str(path)


def _peak_mb(what: str, path: str, tmp_path) -> int:
    args = [sys.executable, "-c", _MEASURE, what, path, str(tmp_path / "engine")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return int(done.stdout.split()[-1])


def test_upload_of_a_big_16_bit_png_does_not_decode_its_pixels(big16, tmp_path):
    assert _peak_mb("upload", big16, tmp_path) < 100  # the frame alone is 122 MB


def test_processing_decode_of_a_big_16_bit_png_has_no_float64_frame(big16, tmp_path):
    assert _peak_mb("decode", big16, tmp_path) < 600  # a float64 copy alone is 488 MB


def test_inspect_gives_the_oriented_size_and_refuses_bad_data():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20)).save(buf, "JPEG", exif=exif)
    assert inspect_image(buf.getvalue()) == (20, 40)
    png = io.BytesIO()
    Image.new("L", (30, 10)).save(png, "PNG")
    assert inspect_image(png.getvalue()) == (30, 10)
    data = bytearray(png.getvalue())
    data[-20] ^= 0xFF  # inside IDAT: checksum fails
    with pytest.raises(InvalidImageError):
        inspect_image(bytes(data))
    with pytest.raises(InvalidImageError):
        inspect_image(png.getvalue(), max_pixels=299)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F"])
def test_high_bit_greyscale_converts_within_one_level(mode):
    rng = np.random.default_rng(3)
    if mode == "F":
        values = rng.random((300, 70), dtype=np.float32)
        image = Image.fromarray(values, "F")
        reference = values.astype(np.float64) * 255.0
    else:
        values = rng.integers(0, 65536, (300, 70)).astype(np.uint16)
        if mode == "I;16B":
            image = Image.frombytes(mode, (70, 300), values.astype(">u2").tobytes())
        else:
            image = Image.fromarray(values).convert(mode)
        reference = values.astype(np.float64) / 65535.0 * 255.0
    assert image.mode == mode
    out = np.asarray(load_image(image))[..., 0].astype(int)
    assert np.abs(out - np.clip(np.rint(reference), 0, 255)).max() <= 1


def test_sixteen_bit_png_decodes_within_one_level():
    values = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "PNG")
    out = np.asarray(decode_image(buf.getvalue()))[..., 0].astype(int)
    assert np.abs(out - np.rint(values / 65535.0 * 255.0)).max() <= 1
