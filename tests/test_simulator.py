"""The service simulator: real small outputs without segmentation, and the plan's limit.

Everything talks HTTP to the project's own server on 127.0.0.1 (``ServerThread(simulate=...)``);
counts are the server's.
"""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from bgcut_nb import InvalidImageError, NotFoundError, RemoteBackend, RetryPolicy
from bgcut_nb.contract.wire import PROCESS_PATH, UPLOAD_PATH
from bgcut_nb.testing.server import ServerThread
from bgcut_nb.testing.simulator import SimulatedBackend, SimulatorSpec, parse_seconds

KEY = "sk-sim-SECRET-1b2c"
NO_RETRY = RetryPolicy(retries=0)
FAST = SimulatorSpec(process_seconds=(0.01, 0.03))


def jpeg(size=(300, 200), colour=(20, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def test_outputs_are_real_images_that_follow_each_variant():
    with ServerThread({KEY: 100}, simulate=FAST) as server:
        api = RemoteBackend(KEY, server.base_url, retry=NO_RETRY)
        up = api.upload_image(jpeg())
        result = api.process_image(
            up.unique_filename,
            [
                {"variant_name": "full"},
                {"variant_name": "crop", "format": "webp", "autocrop": True},
                {"variant_name": "small", "format": "jpg", "max_resolution": 6000},
                {"variant_name": "red", "format": "png", "background_color": "#ff0000"},
            ],
        )
        images = {
            name: Image.open(io.BytesIO(api.fetch(url))) for name, url in result.output_urls.items()
        }
        assert Image.open(io.BytesIO(api.fetch(result.input_url))).size == (300, 200)
        api.close()
        assert server.stats["process"] == 1 and server.backend.calls["process"] == 1
    full, crop, small, red = images["full"], images["crop"], images["small"], images["red"]
    assert (full.format, full.mode, full.size) == ("PNG", "RGBA", (300, 200))
    assert full.getpixel((2, 2))[3] == 0 and full.getpixel((150, 100))[3] == 255
    assert crop.format == "WEBP" and crop.width < 300 and crop.height < 200
    assert small.format == "JPEG" and small.mode == "RGB"
    assert small.width * small.height <= 6000 and abs(small.width / small.height - 1.5) < 0.1
    assert small.getpixel((1, 1)) >= (250, 250, 250)  # flattened onto white
    assert red.mode == "RGB" and red.getpixel((1, 1)) == (255, 0, 0)


def test_bad_images_and_unknown_uploads_answer_like_the_service():
    with ServerThread({KEY: 100}, simulate=FAST) as server:
        api = RemoteBackend(KEY, server.base_url, retry=NO_RETRY)
        with pytest.raises(InvalidImageError):
            api.upload_image(b"GIF89a not an image we take")
        with pytest.raises(NotFoundError):
            api.process_image("0f4c5e3a-1b2c-4d5e-8f90-123456789abc", [{"variant_name": "a"}])
        api.close()


def test_the_plan_answers_429_with_retry_after_and_only_counts_paid_endpoints():
    spec = SimulatorSpec(process_seconds=(0.0, 0.0), plan_rpm=60)  # 1/s, bucket of 1
    with ServerThread({KEY: 100, "other-key": 100}, simulate=spec) as server:
        headers = {"Authorization": f"Bearer {KEY}"}
        files = {"image": ("a.jpg", jpeg())}
        first = requests.post(server.base_url + UPLOAD_PATH, headers=headers, files=files)
        second = requests.post(server.base_url + UPLOAD_PATH, headers=headers, files=files)
        assert first.status_code == 200
        assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
        assert "60 requests per minute" in second.json()["detail"]
        name = first.json()["unique_filename"]
        body = {"unique_filename": name, "output_variants": [{"variant_name": "a"}]}
        assert (
            requests.post(server.base_url + PROCESS_PATH, headers=headers, json=body).status_code
            == 429
        )
        # another key has its own plan; a bad key is told 401, not 429
        other = {"Authorization": "Bearer other-key"}
        assert requests.post(server.base_url + UPLOAD_PATH, headers=other, files=files).ok
        bad = {"Authorization": "Bearer wrong"}
        assert (
            requests.post(server.base_url + UPLOAD_PATH, headers=bad, files=files).status_code
            == 401
        )
        # the app counts what reached it (two accepted uploads and the 401); the plan its 429s
        assert dict(server.stats) == {"upload": 3, "rate_limited": 2}


def test_output_downloads_do_not_count_against_the_plan():
    spec = SimulatorSpec(process_seconds=(0.0, 0.0), plan_rpm=60, plan_burst=2)
    with ServerThread({KEY: 100}, simulate=spec) as server:
        api = RemoteBackend(KEY, server.base_url, retry=NO_RETRY, requests_per_minute=6000)
        up = api.upload_image(jpeg())
        variants = [{"variant_name": n} for n in "abc"]
        result = api.process_image(up.unique_filename, variants)
        for _ in range(4):
            for url in result.output_urls.values():
                assert api.fetch(url)[:4] == b"\x89PNG"
        api.close()
        assert dict(server.stats) == {"upload": 1, "process": 1, "file": 12, "engine_calls": 1}


def test_processing_times_are_drawn_from_the_range_and_repeat_with_the_seed():
    assert parse_seconds("1-3") == (1.0, 3.0) and parse_seconds("2") == (2.0, 2.0)
    with pytest.raises(ValueError):
        parse_seconds("3-1")
    runs = []
    for seed in (7, 7, 8):
        backend = SimulatedBackend(SimulatorSpec(process_seconds=(0.0, 0.004), seed=seed))
        up = backend.upload_image(jpeg((40, 30)))
        for _ in range(5):
            backend.process_image(up.unique_filename, [{"variant_name": "a"}])
        runs.append(list(backend.drawn))
    assert runs[0] == runs[1] != runs[2]
    assert all(0.0 <= s <= 0.004 for s in runs[0])


def test_serve_offers_the_simulator_on_the_command_line():
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "bgcut-nb"
    out = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--simulate", "--sim-process-seconds", "--sim-latency", "--plan-rpm"):
        assert flag in out.stdout
