"""The server under abuse (issue 10): odd variant names, secrets in tracebacks and logs,
unpaid work, storage sweeps and quotas, stalled uploads. Every request goes to the project's
own server on 127.0.0.1, started by the test."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from bgcut_nb.backends.remote import PROCESS_PATH, UPLOAD_PATH, RemoteBackend
from bgcut_nb.server.testing import ServerThread

KEY = "abuse-key-SECRET-51f0"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def server(bgcut_engine, tmp_path):
    with ServerThread({KEY: 50.0}, tmp_path / "srv", backend=bgcut_engine, rate_limit=0) as s:
        yield s


def _upload(server: ServerThread, data: bytes) -> str:
    answer = requests.post(server.base_url + UPLOAD_PATH, headers=AUTH, files={"image": data})
    assert answer.status_code == 200, answer.text
    return answer.json()["unique_filename"]


ODD_NAMES = ["a/b", "../x", "..", "%2F", "a?b#c", "sp ace", "ünï/cødé", "\\back", "/"]


def test_any_variant_name_gives_a_url_that_serves_the_output(server, bgcut_photo):
    """F1: names with '/', '..', '%', '?', '#' give URLs that answer 200 with the image."""
    name = _upload(server, bgcut_photo(160, 120))
    variants = [{"variant_name": n, "quality": "low", "format": "webp"} for n in ODD_NAMES]
    answer = requests.post(
        server.base_url + PROCESS_PATH,
        headers=AUTH,
        json={"unique_filename": name, "output_variants": variants},
    )
    assert answer.status_code == 200, answer.text
    urls = answer.json()["output_urls"]
    assert sorted(urls) == sorted(ODD_NAMES)
    for variant_name, url in urls.items():
        got = requests.get(url, timeout=30)
        assert got.status_code == 200, (variant_name, url, got.text)
        assert Image.open(io.BytesIO(got.content)).format == "WEBP"
    assert server.credits(KEY) == 50.0 - len(ODD_NAMES)


def test_odd_variant_names_through_the_client_are_paid_once(server, bgcut_photo):
    """F1: RemoteBackend downloads every odd-named output of one call."""
    backend = RemoteBackend(KEY, server.base_url)
    up = backend.upload_image(bgcut_photo(160, 120))
    result = backend.process_image(up.unique_filename, [{"variant_name": "../x", "quality": "low"}])
    assert backend.fetch(result.output_urls["../x"]).startswith(b"\x89PNG")


def _locals_text(exc: BaseException) -> str:
    """What a verbose traceback (IPython ``%xmode Verbose``) prints: every frame's locals."""
    import traceback

    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def test_verbose_tracebacks_never_show_the_key(server, bgcut_photo):
    """F6: no frame local of a failed call holds the key (402, 404 and a refused connection)."""
    from bgcut_nb import InsufficientCreditsError, NotFoundError
    from bgcut_nb.backends.remote import APIConnectionError, RetryPolicy

    backend = RemoteBackend(KEY, server.base_url, retry=RetryPolicy(retries=1, backoff=0.01))
    with pytest.raises(NotFoundError) as missing:
        backend.process_image("no-such-upload", [{"variant_name": "a", "quality": "low"}])
    up = backend.upload_image(bgcut_photo(160, 120))
    too_many = [{"variant_name": f"v{i}", "quality": "low"} for i in range(60)]
    with pytest.raises(InsufficientCreditsError) as broke:
        backend.process_image(up.unique_filename, too_many)
    offline = RemoteBackend(KEY, "http://127.0.0.1:9", retry=RetryPolicy(retries=1, backoff=0.01))
    with pytest.raises(APIConnectionError) as refused:
        offline.upload_image(b"x")
    for caught in (missing, broke, refused):
        text = _locals_text(caught.value)
        assert "_send" in text  # the frames are there, with their locals
        assert KEY not in text


def test_the_prepared_request_hides_the_key_but_sends_it(server):
    """F6: the header value reprs as redacted wherever requests/urllib3 keep it."""
    backend = RemoteBackend(KEY, server.base_url)
    prepared = backend._session.prepare_request(
        requests.Request("POST", server.base_url + UPLOAD_PATH, auth=backend._auth)
    )
    assert KEY not in repr(dict(prepared.headers)) and KEY not in repr(prepared.headers)
    assert prepared.headers["Authorization"] == f"Bearer {KEY}"  # what goes on the wire


def _serve(tmp_path, *extra: str):
    """``bgcut-nb serve`` in a subprocess on a free loopback port; returns (proc, base)."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "bgcut_nb", "serve", "--port", str(port), "--api-key", KEY,
        "--storage-dir", str(tmp_path / "store"), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(base + "/openapi.json", timeout=1)
            return proc, base
        except requests.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)


def test_access_log_redacts_query_keys_and_signatures(tmp_path, bgcut_photo):
    """F7: ``?api_key=KEY`` is refused and never logged; signed URLs are logged unsigned."""
    proc, base = _serve(tmp_path)
    try:
        refused = requests.post(
            base + UPLOAD_PATH + f"?api_key={KEY}", files={"image": bgcut_photo(64, 48)}
        )
        assert refused.status_code == 401
        assert requests.get(base + f"/openapi.json?token={KEY}").status_code == 200
        backend = RemoteBackend(KEY, base)
        up = backend.upload_image(bgcut_photo(160, 120))
        url = backend.process_image(up.unique_filename, [{"variant_name": "a", "quality": "low"}])
        url = url.output_urls["a"]
        assert backend.fetch(url).startswith(b"\x89PNG")
        signature = url.rsplit("signature=", 1)[1]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "/openapi.json?token=" in output  # the access log is on, requests are logged
    assert KEY not in output
    assert signature not in output


def _concurrently(calls, workers: int = 32):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda call: call(), calls))


def _post_process(server, name, variants, key=KEY):
    def call():
        return requests.post(
            server.base_url + PROCESS_PATH,
            headers={"Authorization": f"Bearer {key}"},
            json={"unique_filename": name, "output_variants": variants},
            timeout=120,
        )

    return call


def test_concurrent_calls_beyond_the_credits_never_run(tmp_path, bgcut_photo):
    """F4: 10 credits, 30 concurrent calls: 10 renders, 10 answers 200, 20 answers 402."""
    from notebook_support import local_backend

    engine = local_backend(tmp_path / "engine")
    with ServerThread({KEY: 10.0}, tmp_path / "srv", backend=engine, rate_limit=0, queue=40) as s:
        name = _upload(s, bgcut_photo(480, 360))
        calls = [  # each call its own rendering (max_resolution), so each render is a file
            _post_process(s, name, [{"variant_name": "v", "quality": "medium",
                                     "max_resolution": 50_000 + i}])
            for i in range(30)
        ]  # fmt: skip
        answers = _concurrently(calls)
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * 10 + [402] * 20, statuses
        assert s.credits(KEY) == 0.0
        assert len(s.app.state.service.ledger.charges(_hash(KEY))) == 10
    renders = list((tmp_path / "engine" / "uploads").glob("*/outputs/*/*.png"))
    assert len(renders) == 10  # the 20 unpaid calls rendered nothing


def _hash(key: str) -> str:
    from bgcut_nb.server.keys import key_hash

    return key_hash(key)


def test_a_full_engine_queue_answers_429_with_retry_after(tmp_path, bgcut_engine, bgcut_photo):
    """Item 1: one worker, one queued call: a burst of 8 gets 429s with Retry-After; each
    answered call is charged exactly once and the refused ones cost nothing."""
    with ServerThread(
        {KEY: 100.0}, tmp_path / "srv", backend=bgcut_engine, rate_limit=0, workers=1, queue=1
    ) as s:
        name = _upload(s, bgcut_photo(480, 360))
        calls = [
            _post_process(s, name, [{"variant_name": "v", "quality": "high",
                                     "max_resolution": 60_000 + i}])
            for i in range(8)
        ]  # fmt: skip
        answers = _concurrently(calls)
        ok = [a for a in answers if a.status_code == 200]
        busy = [a for a in answers if a.status_code == 429]
        assert len(ok) + len(busy) == 8 and 1 <= len(ok) <= 3 and busy
        assert all(int(a.headers["Retry-After"]) >= 1 for a in busy)
        assert all("Server busy" in a.json()["detail"] for a in busy)
        assert s.credits(KEY) == 100.0 - len(ok)
        assert s.stats["engine_calls"] == len(ok)


def test_a_call_whose_work_fails_is_refunded(server, bgcut_photo, bgcut_engine):
    """Item 1: credits are reserved before the work and given back when it fails."""
    name = _upload(server, bgcut_photo(160, 120))
    local = server.app.state.service.ledger.find_upload(name, _hash(KEY))
    for path in (bgcut_engine.storage_dir / "uploads" / local).glob("input.*"):
        path.unlink()  # the stored image is lost (a full disk, a sweep racing the call)
    answer = _post_process(server, name, [{"variant_name": "a", "quality": "low"}])()
    assert answer.status_code == 404, answer.text
    assert server.credits(KEY) == 50.0
    assert server.stats["refunds"] == 1 and not server.app.state.service.ledger.charges(_hash(KEY))
