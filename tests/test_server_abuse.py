"""The server under abuse (issue 10): odd variant names, secrets in tracebacks and logs,
unpaid work, storage sweeps and quotas, stalled uploads. Every request goes to the project's
own server on 127.0.0.1, started by the test."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from bgcut_nb.backends.remote import PROCESS_PATH, UPLOAD_PATH, RemoteBackend
from bgcut_nb.testing.server import ServerThread, wait_until_serving

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
    dear = [{"variant_name": f"v{i}", "quality": "low", "autocrop": True} for i in range(20)]
    backend.process_image(up.unique_filename, dear)  # 30 of the 50 credits
    dearer = [{**v, "variant_name": f"w{i}"} for i, v in enumerate(dear)]  # not a replay
    with pytest.raises(InsufficientCreditsError) as broke:
        backend.process_image(up.unique_filename, dearer)
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

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "bgcut_nb", "serve", "--port", str(port), "--api-key", KEY,
        "--storage-dir", str(tmp_path / "store"), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    assert wait_until_serving(proc, base), "serve did not start"
    return proc, base


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
        assert len(s.app.state.service.ledger.charges(s.app.state.service.key_hash(KEY))) == 10
    renders = list((tmp_path / "engine" / "uploads").glob("*/outputs/*/*.png"))
    assert len(renders) == 10  # the 20 unpaid calls rendered nothing


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
    service = server.app.state.service
    local = service.ledger.find_upload(name, service.key_hash(KEY))
    for path in (bgcut_engine.storage_dir / "uploads" / local).glob("input.*"):
        path.unlink()  # the stored image is lost (a full disk, a sweep racing the call)
    answer = _post_process(server, name, [{"variant_name": "a", "quality": "low"}])()
    assert answer.status_code == 404, answer.text
    assert server.credits(KEY) == 50.0
    assert server.stats["refunds"] == 1 and not service.ledger.charges(service.key_hash(KEY))


def test_expired_uploads_are_swept_on_a_timer(tmp_path, bgcut_photo):
    """F8: with no later upload, an expired upload's files and rows go on the sweeper's timer."""
    import time

    from notebook_support import local_backend

    engine = local_backend(tmp_path / "engine", upload_ttl=1.0)
    options = dict(rate_limit=0, upload_ttl=1.0, url_ttl=1.0, sweep_interval=0.2)
    with ServerThread({KEY: 10.0}, tmp_path / "srv", backend=engine, **options) as s:
        name = _upload(s, bgcut_photo(160, 120))
        answer = _post_process(s, name, [{"variant_name": "a", "quality": "low"}])()
        assert answer.status_code == 200
        uploads = tmp_path / "engine" / "uploads"
        assert len(list(uploads.iterdir())) == 1
        import sqlite3

        def tokens() -> int:
            with sqlite3.connect(s.storage_dir / "server.sqlite3") as db:
                return db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

        assert tokens() == 2  # input and output URL
        deadline = time.monotonic() + 10
        while (any(uploads.iterdir()) or tokens()) and time.monotonic() < deadline:
            time.sleep(0.1)  # no request at all meanwhile
        assert not any(uploads.iterdir()), (s.stats, list(uploads.rglob("*")), tokens())
        assert tokens() == 0
        assert s.stats["swept"] == 1 and s.stats["upload"] == 1


def test_uploads_per_hour_quota_is_429_with_retry_after(tmp_path, bgcut_engine, bgcut_photo):
    """F9: a key's uploads per hour are limited; the refusal says why and when to retry."""
    with ServerThread(
        {KEY: 10.0, "other-key": 1.0}, tmp_path / "srv", backend=bgcut_engine, rate_limit=0,
        uploads_per_hour=3,
    ) as s:  # fmt: skip
        for _ in range(3):
            _upload(s, bgcut_photo(64, 48))
        refused = requests.post(
            s.base_url + UPLOAD_PATH, headers=AUTH, files={"image": bgcut_photo(64, 48)}
        )
        assert refused.status_code == 429
        assert "Upload quota exceeded: at most 3 uploads per hour" in refused.json()["detail"]
        assert 3000 < int(refused.headers["Retry-After"]) <= 3600
        other = requests.post(
            s.base_url + UPLOAD_PATH,
            headers={"Authorization": "Bearer other-key"},
            files={"image": bgcut_photo(64, 48)},
        )
        assert other.status_code == 200  # per key


def test_bytes_stored_quota_is_413(tmp_path, bgcut_engine, bgcut_photo):
    """F9: a key's live uploads may hold at most ``storage_bytes``; nothing more is written."""
    photo = bgcut_photo(480, 360)
    with ServerThread(
        {KEY: 10.0}, tmp_path / "srv", backend=bgcut_engine, rate_limit=0,
        storage_bytes=int(len(photo) * 2.5),
    ) as s:  # fmt: skip
        before = len(list((bgcut_engine.storage_dir / "uploads").iterdir()))
        _upload(s, photo)
        _upload(s, photo)
        refused = requests.post(s.base_url + UPLOAD_PATH, headers=AUTH, files={"image": photo})
        assert refused.status_code == 413
        assert "Storage quota exceeded" in refused.json()["detail"]
        assert len(list((bgcut_engine.storage_dir / "uploads").iterdir())) == before + 2


def test_stalled_uploads_time_out_quietly(tmp_path, bgcut_engine, capfd):
    """F10: 20 half-sent uploads are answered 408 and closed within the body timeout, and
    abandoned ones leave no traceback in the log."""
    import socket
    import time

    with ServerThread(
        {KEY: 10.0}, tmp_path / "srv", backend=bgcut_engine, rate_limit=0, body_timeout=1.0
    ) as s:
        head = (
            (
                f"POST {UPLOAD_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                "Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 100000\r\n\r\n"
                '--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
            ).encode()
            + b"\x89PNG"
            + b"\0" * 5000
        )
        started = time.monotonic()
        sockets = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            sock.sendall(head)
            sockets.append(sock)
        answers = []
        for sock in sockets:
            data = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                data += chunk
            answers.append(data)
            sock.close()
        assert time.monotonic() - started < 8
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[0][:200]
        assert b"stalled" in answers[0]
        # half-sent and then abandoned: the client goes away
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            sock.sendall(head)
            sock.close()
        time.sleep(1.5)
        assert requests.get(s.base_url + "/openapi.json").status_code == 200
    assert "Traceback" not in capfd.readouterr().err
