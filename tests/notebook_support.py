"""Helpers for the notebook-layer tests: distinct small photos and a shared local engine."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from bgcut_nb.backends.local import LocalBackend
from bgcut_nb.engine.pipeline import LocalEngine

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"

#: Two cheap variants: small outputs, the fastest quality tier.
LOW_VARIANTS = [
    {"variant_name": "cut", "quality": "low", "max_resolution": 20_000},
    {
        "variant_name": "white",
        "quality": "low",
        "format": "jpg",
        "background_color": "#ffffff",
        "max_resolution": 20_000,
    },
]
NEW_VARIANT = {"variant_name": "thumb", "quality": "low", "format": "webp", "max_resolution": 4_000}


@functools.cache
def shared_engine() -> LocalEngine:
    """One engine (models loaded once) for every LocalBackend the tests create."""
    return LocalEngine()


def local_backend(storage: Path, **options) -> LocalBackend:
    """A real LocalBackend in ``storage`` on the shared engine."""
    return LocalBackend(storage, engine=shared_engine(), **options)


def make_photos(folder: Path, count: int, size: tuple[int, int] = (96, 64)) -> list[Path]:
    """``count`` different JPEG photos (a coloured disc on a light background) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(count):
        cx, cy = w * (0.35 + 0.3 * (i % 3) / 2), h / 2
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < (min(w, h) / 3) ** 2
        colour = [(40 * i) % 200 + 30, 60, 200 - (30 * i) % 150]
        rgb = np.where(disc[..., None], colour, [228, 232, 236]).astype(np.uint8)
        path = folder / f"photo{i}.jpg"
        Image.fromarray(rgb).save(path, quality=92)
        paths.append(path)
    return paths
