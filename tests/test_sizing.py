"""One pixel-fitting rule for decoding and rendering: an image decoded for a call's variants
is never smaller than what rendering then asks of it, so no output is upscaled."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from bgcut_nb.contract.variants import Variant
from bgcut_nb.engine.imaging import decode_image
from bgcut_nb.engine.session import EngineSession
from bgcut_nb.engine.sizing import fit_within

#: Sizes with no common factors, extreme aspect ratios, primes and near-squares.
AWKWARD = [(333, 211), (1001, 7), (7, 1001), (641, 479), (999, 1000), (1283, 857), (4099, 3)]
BUDGETS = [1, 2, 7, 999, 4_097, 30_011, 65_536, 99_991]


def _covers(decoded: tuple[int, int], wanted: tuple[int, int]) -> bool:
    return decoded[0] >= wanted[0] and decoded[1] >= wanted[1]


def test_fit_within_is_monotone_in_the_budget():
    """A larger budget never gives a smaller side: decoding at the call's budget covers every
    output at that budget or below."""
    for (width, height), small, large in itertools.product(AWKWARD, BUDGETS, BUDGETS):
        if small <= large:
            assert _covers(fit_within(width, height, large), fit_within(width, height, small))


@pytest.mark.parametrize("width, height", AWKWARD)
@pytest.mark.parametrize("autocrop", [False, True])
def test_the_decode_size_covers_what_rendering_asks_for(width, height, autocrop):
    session = EngineSession(process_max_pixels=20_000)  # small, so awkward sizes are scaled
    for budget in BUDGETS:
        variant = Variant("v", max_resolution=budget, autocrop=autocrop)
        pixels = session.work_pixels([variant], width, height)
        decoded = (width, height) if pixels == 0 else fit_within(width, height, pixels)
        assert _covers(decoded, fit_within(width, height, min(budget, 20_000)))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("width, height", [(1283, 857), (641, 479), (1001, 67)])
def test_a_real_decode_at_the_budget_covers_the_output_size(fmt, width, height):
    """The decoder (a JPEG at a reduced DCT scale first) keeps to the same rule."""
    rgb = np.random.default_rng(3).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt)
    session = EngineSession(process_max_pixels=30_011)
    for budget in (999, 4_097, 30_011):
        pixels = session.work_pixels([Variant("v", max_resolution=budget)], width, height)
        image = decode_image(buffer.getvalue(), target_pixels=pixels or None)
        assert image.width * image.height <= (pixels or width * height)
        assert _covers(image.size, fit_within(width, height, budget))
