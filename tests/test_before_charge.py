"""Requests refused before they cost anything (issue 20 items 3 and 5): text that is not
UTF-8, newline-suffixed colours, too many variants per call and storage beyond a key's quota
are answered 400/413 by the project's own server on 127.0.0.1, with the balance unchanged and
nothing rendered; the client refuses the same requests before sending them."""

from __future__ import annotations

import pytest
import requests

from bgcut_nb import BadRequestError, Variant, parse_variants
from bgcut_nb.backends.remote import PROCESS_PATH, UPLOAD_PATH, RemoteBackend
from bgcut_nb.testing.server import ServerThread

KEY = "guard-key-SECRET-7a1c"
AUTH = {"Authorization": f"Bearer {KEY}"}
CREDITS = 50.0
#: The documented cap on output_variants per call (docs/operations.md, Limits).
MAX_VARIANTS_PER_CALL = 20


@pytest.fixture
def server(bgcut_engine, tmp_path):
    with ServerThread({KEY: CREDITS}, tmp_path / "srv", backend=bgcut_engine, rate_limit=0) as s:
        yield s


def _upload(server: ServerThread, data: bytes) -> str:
    answer = requests.post(server.base_url + UPLOAD_PATH, headers=AUTH, files={"image": data})
    assert answer.status_code == 200, answer.text
    return answer.json()["unique_filename"]


def _process(server: ServerThread, body: dict) -> requests.Response:
    # requests writes JSON with ensure_ascii: a lone surrogate travels as "\ud800"
    return requests.post(server.base_url + PROCESS_PATH, headers=AUTH, json=body, timeout=120)


def _outputs(engine) -> int:
    return len(list((engine.storage_dir / "uploads").glob("*/outputs/*/*")))


LOW = {"quality": "low", "max_resolution": 20_000}
BAD_VARIANTS = [
    ({"variant_name": "\ud800", **LOW}, "UTF-8"),
    ({"variant_name": "ok\udfff", **LOW}, "UTF-8"),
    ({"variant_name": "\ud800", "colour": "#fff", **LOW}, "unknown field"),
    ({"variant_name": "a", "background_color": "#fff\n", "format": "jpg", **LOW}, "hex"),
    ({"variant_name": "a", "background_color": "#ffffff\n", "format": "jpg", **LOW}, "hex"),
    ({"variant_name": "a", "background_color": "\ud800", **LOW}, "UTF-8"),
    ({"variant_name": "a", "format": "png\n", **LOW}, "format"),
    ({"variant_name": "a", "quality": "low\udc80"}, "UTF-8"),
]


@pytest.mark.parametrize(("variant", "needle"), BAD_VARIANTS)
def test_bad_text_in_a_variant_is_400_before_any_charge(server, bgcut_photo, variant, needle):
    name = _upload(server, bgcut_photo(64, 48))
    before = _outputs(server.backend)
    answer = _process(server, {"unique_filename": name, "output_variants": [variant]})
    assert answer.status_code == 400, answer.text
    assert needle in answer.json()["detail"]
    assert server.credits(KEY) == CREDITS
    assert server.stats["engine_calls"] == 0 and _outputs(server.backend) == before


@pytest.mark.parametrize("unique_filename", ["\udc80", "\ud800abc", "x\udfff"])
def test_a_unique_filename_that_is_not_utf8_is_400(server, unique_filename):
    answer = _process(
        server,
        {"unique_filename": unique_filename, "output_variants": [{"variant_name": "a", **LOW}]},
    )
    assert answer.status_code == 400, answer.text
    assert "UTF-8" in answer.json()["detail"]
    assert server.credits(KEY) == CREDITS


@pytest.mark.parametrize("count", [MAX_VARIANTS_PER_CALL + 1, 1000])
def test_too_many_variants_in_one_call_are_400(server, bgcut_photo, count):
    name = _upload(server, bgcut_photo(64, 48))
    before = _outputs(server.backend)
    variants = [{"variant_name": f"v{i}", **LOW} for i in range(count)]
    answer = _process(server, {"unique_filename": name, "output_variants": variants})
    assert answer.status_code == 400, answer.text
    assert f"at most {MAX_VARIANTS_PER_CALL} variants" in answer.json()["detail"]
    assert server.credits(KEY) == CREDITS
    assert server.stats["engine_calls"] == 0 and _outputs(server.backend) == before


def test_the_cap_itself_is_accepted(server, bgcut_photo):
    name = _upload(server, bgcut_photo(64, 48))
    variants = [{"variant_name": f"v{i}", **LOW} for i in range(MAX_VARIANTS_PER_CALL)]
    answer = _process(server, {"unique_filename": name, "output_variants": variants})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["output_urls"]) == MAX_VARIANTS_PER_CALL
    assert server.credits(KEY) == CREDITS - MAX_VARIANTS_PER_CALL


def test_the_openapi_document_states_the_cap(server):
    doc = requests.get(server.base_url + "/openapi.json", timeout=30).json()
    variants = doc["components"]["schemas"]["ProcessRequest"]["properties"]["output_variants"]
    assert variants["maxItems"] == MAX_VARIANTS_PER_CALL
    from bgcut_nb.contract import variants as contract

    assert contract.MAX_VARIANTS_PER_CALL == MAX_VARIANTS_PER_CALL


def test_the_client_refuses_the_same_requests_before_sending(server):
    """Variant validation and RemoteBackend refuse without a request reaching the server."""
    for variant, _ in BAD_VARIANTS:
        with pytest.raises(BadRequestError):
            Variant.from_dict(variant)
    with pytest.raises(BadRequestError, match="UTF-8"):
        Variant("\ud800")
    with pytest.raises(BadRequestError, match=f"at most {MAX_VARIANTS_PER_CALL} variants"):
        parse_variants([Variant(f"v{i}") for i in range(MAX_VARIANTS_PER_CALL + 1)])
    backend = RemoteBackend(KEY, server.base_url)
    with pytest.raises(BadRequestError, match="UTF-8"):
        backend.process_image("\udc80", [Variant("a")])
    with pytest.raises(BadRequestError):
        backend.process_image("x", [{"variant_name": f"v{i}"} for i in range(1000)])
    with pytest.raises(BadRequestError):
        backend.process_image("x", [{"variant_name": "a", "background_color": "#fff\n"}])
    assert server.stats["process"] == 0


def test_outputs_count_against_the_storage_quota(bgcut_engine, tmp_path, bgcut_photo):
    """Item 5: the per-key quota holds uploads and their rendered outputs: once outputs fill
    it, the next call is 413 before any charge; when the upload expires, the room is back."""
    import time

    photo = bgcut_photo(480, 360)
    # The upload lives upload_ttl seconds from its upload: load the models (and remember this
    # photo's pass) first, so a cold first call on a busy runner cannot outlive it.
    warm = bgcut_engine.upload_image(photo)
    bgcut_engine.process_image(warm.unique_filename, [Variant("a")])
    with ServerThread(
        {KEY: CREDITS}, tmp_path / "srv", backend=bgcut_engine, rate_limit=0,
        storage_bytes=len(photo) + 1024, upload_ttl=8, sweep_interval=0.5,
    ) as s:  # fmt: skip
        name = _upload(s, photo)
        first = _process(s, {"unique_filename": name, "output_variants": [{"variant_name": "a"}]})
        assert first.status_code == 200, first.text  # the outputs take the key past its quota
        assert s.credits(KEY) == CREDITS - 1
        calls = s.stats["engine_calls"]
        second = _process(
            s, {"unique_filename": name, "output_variants": [{"variant_name": "b", **LOW}]}
        )
        assert second.status_code == 413, second.text
        assert "Storage quota exceeded" in second.json()["detail"]
        assert s.credits(KEY) == CREDITS - 1 and s.stats["engine_calls"] == calls
        refused = requests.post(s.base_url + UPLOAD_PATH, headers=AUTH, files={"image": photo})
        assert refused.status_code == 413, refused.text
        deadline = time.monotonic() + 20
        while s.stats["swept"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert s.stats["swept"] >= 1
        _upload(s, photo)  # the expired upload and its outputs no longer count


def test_repeating_a_rendering_does_not_count_its_outputs_twice(
    bgcut_engine, tmp_path, bgcut_photo
):
    """The same output file, rendered again under the same name, is one file stored."""
    photo = bgcut_photo(160, 120)
    with ServerThread({KEY: CREDITS}, tmp_path / "srv", backend=bgcut_engine, rate_limit=0) as s:
        name = _upload(s, photo)
        service = s.app.state.service
        body = {"unique_filename": name, "output_variants": [{"variant_name": "a", **LOW}]}
        assert _process(s, body).status_code == 200
        once = service.ledger.stored_bytes(service.key_hash(KEY))
        assert once > len(photo)
        assert _process(s, body).status_code == 200
        assert service.ledger.stored_bytes(service.key_hash(KEY)) == once
