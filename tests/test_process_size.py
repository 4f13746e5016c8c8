"""F3: memory per call follows what the variants need, not the input's size.

A large input whose variants all have a small ``max_resolution`` is decoded (JPEG: at a reduced
DCT scale) and matted at the size they need, and nothing is ever matted above the documented
processing limit (``LocalBackend(process_max_pixels=...)``, 16 MP by default).
"""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
from notebook_support import local_backend
from PIL import Image

from bgcut_nb.engine.imaging import DEFAULT_PROCESS_PIXELS, decode_image


def _big(width: int, height: int, fmt: str) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 3) ** 2
    rgb = np.where(disc[..., None], [200, 60, 40], [230, 232, 236]).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def test_a_jpeg_is_decoded_at_the_needed_size_without_holding_the_full_pixels():
    data = _big(6000, 4000, "JPEG")  # 24 MP
    tracemalloc.start()
    image = decode_image(data, target_pixels=1_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert image.width * image.height <= 1_000_000 and image.width > 1100
    assert abs(image.width / image.height - 1.5) < 0.01
    assert peak < 24_000_000 * 3 / 4  # well under the full RGB pixels (72 MB)


def test_small_variants_of_a_large_image_are_matted_small(tmp_path, monkeypatch):
    backend = local_backend(tmp_path / "engine")
    matted: list[tuple[int, int]] = []  # the size of every image the (shared) engine mattes
    engine_cutouts = backend.engine.cutouts
    monkeypatch.setattr(
        backend.engine,
        "cutouts",
        lambda image, tiers: matted.append(image.size) or engine_cutouts(image, tiers),
    )
    up = backend.upload_image(_big(5000, 4000, "PNG"))  # 20 MP
    result = backend.process_image(
        up.unique_filename,
        [{"variant_name": "small", "quality": "low", "max_resolution": 40_000, "format": "jpg"}],
    )
    ((width, height),) = matted
    assert width * height <= 1_000_000 and width > 1100  # not 20 MP
    with Image.open(io.BytesIO(backend.fetch(result.output_urls["small"]))) as out:
        assert out.width * out.height <= 40_000 and out.width > 200
    # the default (12 MP) output of the same image is matted at that size, under the limit
    assert backend.session.work_pixels([_variant(12_000_000)], 5000, 4000) == 12_000_000
    assert backend.session.work_pixels([_variant(50_000_000)], 5000, 4000) == DEFAULT_PROCESS_PIXELS
    assert backend.session.work_pixels([_variant(50_000_000)], 1000, 800) == 0  # small: full size


def _variant(max_resolution: int):
    from bgcut_nb.contract.variants import Variant

    return Variant(variant_name="v", max_resolution=max_resolution)
