"""One conformance suite for every backend: LocalBackend in-process, RemoteBackend over HTTP.

The remote runs talk to the project's own server on 127.0.0.1 (``ServerThread``); outputs are
downloaded through the backend and checked on real pixels.
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import pytest
import requests
from PIL import Image

from bgcut_nb import (
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
)
from bgcut_nb.backends.remote import PROCESS_PATH, UPLOAD_PATH, RemoteBackend, RetryPolicy
from bgcut_nb.contract.variants import SPEC_EXAMPLE_VARIANTS
from bgcut_nb.contract.wire import UPLOAD_LIFETIME
from bgcut_nb.testing.server import ServerThread

KEY = "conformance-key"
FAST = RetryPolicy(retries=3, backoff=0.05, backoff_max=0.2)

# the spec's three-variant example as JSON dicts (test_variants pins it to the spec's text)
SPEC_VARIANTS = [v.to_dict() for v in SPEC_EXAMPLE_VARIANTS]


class Harness:
    """Opens backends of one kind; ``server`` is the ServerThread behind a remote one."""

    def __init__(self, kind: str, engine, tmp_path, stack: contextlib.ExitStack) -> None:
        self.kind, self.engine, self.tmp_path, self.stack = kind, engine, tmp_path, stack
        self.server: ServerThread | None = None
        self._n = 0

    def open(
        self,
        *,
        credits: float = 100.0,
        upload_ttl: float | None = None,
        other_keys: dict[str, float] | None = None,
        **server_opts,
    ):
        self._n += 1
        if self.kind == "local":
            if upload_ttl is None:
                return self.engine
            from bgcut_nb.backends.local import LocalBackend

            return self.stack.enter_context(
                LocalBackend(self.tmp_path / f"engine{self._n}", upload_ttl=upload_ttl)
            )
        server_opts.setdefault("rate_limit", 0)
        self.server = self.stack.enter_context(
            ServerThread(
                {KEY: credits, **(other_keys or {})},
                self.tmp_path / f"server{self._n}",
                backend=self.engine,
                upload_ttl=upload_ttl or UPLOAD_LIFETIME,
                **server_opts,
            )
        )
        return self.stack.enter_context(RemoteBackend(KEY, self.server.base_url, retry=FAST))


@pytest.fixture(params=["local", "remote"])
def harness(request, bgcut_engine, tmp_path):
    with contextlib.ExitStack() as stack:
        yield Harness(request.param, bgcut_engine, tmp_path, stack)


@pytest.fixture
def remote(bgcut_engine, tmp_path):
    with contextlib.ExitStack() as stack:
        yield Harness("remote", bgcut_engine, tmp_path, stack)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def alpha_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0


# -- upload and the spec's example ---------------------------------------------------------


def test_upload_returns_a_reusable_name(harness, bgcut_photo):
    backend = harness.open()
    first = backend.upload_image(bgcut_photo())
    second = backend.upload_image(io.BytesIO(bgcut_photo(320, 240)))
    assert isinstance(first.unique_filename, str) and first.unique_filename
    assert first.unique_filename != second.unique_filename


def test_spec_three_variant_example_on_real_pixels(harness, bgcut_photo):
    backend = harness.open()
    width, height = 640, 480  # 307,200 px: above the thumbnail's 250,000 px budget
    uploaded = backend.upload_image(bgcut_photo(width, height))
    result = backend.process_image(uploaded.unique_filename, SPEC_VARIANTS)

    assert result.unique_filename == uploaded.unique_filename
    assert set(result.output_urls) == {"full", "thumbnail", "white_bg"}
    source = decode(backend.fetch(result.input_url))
    assert source.size == (width, height)

    full = decode(backend.fetch(result.output_urls["full"]))
    assert full.format == "PNG" and full.mode == "RGBA"
    assert full.size == (width, height)  # under 12 MP: never scaled
    alpha = alpha_of(full)
    assert alpha[int(height * 0.55), width // 2] > 0.9  # the ball is kept
    assert max(alpha[5, 5], alpha[5, -5], alpha[-5, 5], alpha[-5, -5]) < 0.1  # backdrop gone

    thumb = decode(backend.fetch(result.output_urls["thumbnail"]))
    assert thumb.format == "WEBP" and thumb.mode == "RGBA"
    assert thumb.width * thumb.height <= 250_000
    rows, cols = np.nonzero(alpha_of(thumb) > 0.5)
    # autocrop: the subject spans the output (uncropped, the ball would span a third of it)...
    assert (rows.max() - rows.min() + 1) / thumb.height > 0.85
    assert (cols.max() - cols.min() + 1) / thumb.width > 0.85
    # ...and the ball is round, so the crop is about square
    assert 0.8 < thumb.width / thumb.height < 1.25

    white = decode(backend.fetch(result.output_urls["white_bg"]))
    assert white.format == "JPEG" and white.mode == "RGB"
    assert white.size == (width, height)
    pixels = np.asarray(white, dtype=np.int16)
    for corner in (pixels[3, 3], pixels[3, -3], pixels[-3, 3], pixels[-3, -3]):
        assert (corner >= 245).all(), corner  # background filled with #ffffff
    centre = pixels[int(height * 0.55), width // 2]
    assert centre[0] > 150 and centre[2] < 100  # the orange ball, not white


def test_outputs_are_scaled_to_max_resolution_keeping_aspect(harness, bgcut_photo):
    backend = harness.open()
    uploaded = backend.upload_image(bgcut_photo(600, 300))
    result = backend.process_image(
        uploaded.unique_filename,
        [{"variant_name": "small", "max_resolution": 20_000, "quality": "low", "format": "webp"}],
    )
    small = decode(backend.fetch(result.output_urls["small"]))
    assert small.format == "WEBP" and small.mode == "RGBA"
    assert small.width * small.height <= 20_000
    assert small.width * small.height > 15_000  # scaled down, not to a sliver
    assert abs(small.width / small.height - 2.0) < 0.05


def test_reuse_of_unique_filename_without_a_second_upload(harness, bgcut_photo, tmp_path):
    backend = harness.open()
    uploaded = backend.upload_image(bgcut_photo(320, 240))
    first = backend.process_image(
        uploaded.unique_filename, [{"variant_name": "initial", "quality": "low"}]
    )
    second = backend.process_image(
        uploaded.unique_filename,
        [
            {
                "variant_name": "red_bg",
                "background_color": "#FF5733",
                "format": "jpg",
                "quality": "low",
                "output_compression": 90,
            },
            {"variant_name": "tiny", "max_resolution": 10_000, "quality": "low"},
        ],
    )
    assert first.unique_filename == second.unique_filename == uploaded.unique_filename
    assert set(first.output_urls) == {"initial"}
    assert set(second.output_urls) == {"red_bg", "tiny"}
    red = decode(backend.download(second.output_urls["red_bg"], tmp_path / "red.jpg").read_bytes())
    assert red.format == "JPEG"
    assert np.abs(np.asarray(red, dtype=np.int16)[2, 2] - (0xFF, 0x57, 0x33)).max() < 12
    assert decode(backend.fetch(first.output_urls["initial"])).format == "PNG"
    if harness.server is not None:
        assert harness.server.stats["upload"] == 1
        assert harness.server.stats["process"] == 2


# -- errors -----------------------------------------------------------------------------------


def test_duplicate_variant_name_is_400(harness, bgcut_photo):
    backend = harness.open()
    uploaded = backend.upload_image(bgcut_photo(160, 120))
    twice = [{"variant_name": "a", "quality": "low"}, {"variant_name": "a", "format": "jpg"}]
    with pytest.raises(BadRequestError, match="Duplicate variant_name"):
        backend.process_image(uploaded.unique_filename, twice)
    if harness.server is not None:
        # The client refused before sending; the server refuses on its own too.
        assert harness.server.stats["process"] == 0
        answer = requests.post(
            harness.server.base_url + PROCESS_PATH,
            headers={"Authorization": f"Bearer {KEY}"},
            json={"unique_filename": uploaded.unique_filename, "output_variants": twice},
            timeout=30,
        )
        assert answer.status_code == 400
        assert "Duplicate variant_name" in answer.json()["detail"]
        assert harness.server.credits(KEY) == 100.0


def test_unknown_unique_filename_is_404(harness):
    backend = harness.open()
    with pytest.raises(NotFoundError, match="not found or has expired"):
        backend.process_image("no-such-upload", [{"variant_name": "a", "quality": "low"}])


def test_expired_unique_filename_is_404(harness, bgcut_photo):
    backend = harness.open(upload_ttl=0.3)
    uploaded = backend.upload_image(bgcut_photo(160, 120))
    time.sleep(0.6)
    with pytest.raises(NotFoundError):
        backend.process_image(uploaded.unique_filename, [{"variant_name": "a", "quality": "low"}])
    if harness.server is not None:
        assert harness.server.credits(KEY) == 100.0


def test_invalid_image_is_400(harness):
    backend = harness.open()
    with pytest.raises(BadRequestError, match="Invalid image format"):
        backend.upload_image(b"GIF89a not an image we take")


# -- HTTP only: keys, credits, rate limits ------------------------------------------------------


def test_missing_and_wrong_key_are_401(remote, bgcut_photo, monkeypatch):
    remote.open()
    base = remote.server.base_url
    with pytest.raises(AuthenticationError), RemoteBackend("wrong-key", base, retry=FAST) as bad:
        bad.upload_image(bgcut_photo(160, 120))
    missing = requests.post(base + UPLOAD_PATH, files={"image": bgcut_photo(160, 120)}, timeout=30)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Missing Authorization header"}
    monkeypatch.delenv("BGCUT_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="BGCUT_API_KEY"):
        RemoteBackend(None, base)
    assert remote.server.stats["upload"] == 2


def test_unique_filename_belongs_to_its_key(remote, bgcut_photo):
    backend = remote.open(other_keys={"someone-else": 5.0})
    uploaded = backend.upload_image(bgcut_photo(160, 120))
    with RemoteBackend("someone-else", remote.server.base_url, retry=FAST) as other:
        with pytest.raises(NotFoundError):
            other.process_image(uploaded.unique_filename, [{"variant_name": "a", "quality": "low"}])
    assert remote.server.credits("someone-else") == 5.0


def test_insufficient_credits_is_402_and_nothing_is_debited(remote, bgcut_photo):
    backend = remote.open(credits=1.5)
    uploaded = backend.upload_image(bgcut_photo(160, 120))
    costly = [
        {"variant_name": "a", "quality": "low"},
        {"variant_name": "b", "quality": "low", "autocrop": True},
    ]
    assert backend.estimate_credits(costly) == 2.5
    with pytest.raises(InsufficientCreditsError):
        backend.process_image(uploaded.unique_filename, costly)
    assert remote.server.credits(KEY) == 1.5
    result = backend.process_image(
        uploaded.unique_filename, [{"variant_name": "a", "quality": "low", "autocrop": True}]
    )
    assert set(result.output_urls) == {"a"}
    assert remote.server.credits(KEY) == 0.0


def test_rate_limit_429_then_the_clients_retry_succeeds(remote, bgcut_photo):
    backend = remote.open(rate_limit=1.0, burst=1)
    uploaded = backend.upload_image(bgcut_photo(160, 120))  # takes the only token
    started = time.monotonic()
    result = backend.process_image(
        uploaded.unique_filename, [{"variant_name": "a", "quality": "low"}]
    )
    assert time.monotonic() - started >= 0.9  # waited for Retry-After: 1
    assert set(result.output_urls) == {"a"}
    assert remote.server.stats["process"] == 2  # one 429, one success
    assert remote.server.credits(KEY) == 99.0  # charged once


def test_rate_limit_without_retries_raises_with_retry_after(remote, bgcut_photo):
    backend = remote.open(rate_limit=1.0, burst=1)
    impatient = RemoteBackend(KEY, remote.server.base_url, retry=RetryPolicy(retries=0))
    impatient.upload_image(bgcut_photo(160, 120))
    with pytest.raises(RateLimitError) as caught:
        impatient.upload_image(bgcut_photo(160, 120))
    assert caught.value.retry_after == 1
    backend.close()


def test_retry_after_beyond_the_cap_is_raised_at_once(remote, bgcut_photo):
    backend = remote.open(rate_limit=0.01, burst=1)  # next token in 100 s
    backend.upload_image(bgcut_photo(160, 120))
    started = time.monotonic()
    with pytest.raises(RateLimitError) as caught:
        backend.upload_image(bgcut_photo(160, 120))
    assert time.monotonic() - started < 5
    assert caught.value.retry_after == 100
