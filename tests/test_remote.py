"""RemoteBackend behaviour the conformance suite does not reach: secrets, retries, odd answers.

Most tests use the project's own server; a few need answers it never gives (a non-JSON error
page, a dropped connection from a server that does not deduplicate) and use a tiny scripted
HTTP server from the standard library, also on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bgcut_nb import APIError, BadRequestError, NotFoundError
from bgcut_nb.backends.remote import (
    IDEMPOTENCY_HEADER,
    APIConnectionError,
    RemoteBackend,
    RetryPolicy,
)
from bgcut_nb.testing.server import ServerThread

SECRET = "sk-very-secret-0123456789"
FAST = RetryPolicy(retries=2, backoff=0.01, backoff_max=0.05)


class Scripted:
    """A loopback HTTP server answering from a list of ``(status, headers, body)`` or "drop"."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                scripted.requests.append((self.command, self.path, dict(self.headers)))
                answer = (
                    scripted.answers.pop(0) if len(scripted.answers) > 1 else scripted.answers[0]
                )
                if answer == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, headers, body = answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    servers = []

    def make(*answers):
        servers.append(Scripted(answers))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _json(status, body, **headers):
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


def test_key_and_base_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("BGCUT_API_KEY", SECRET)
    monkeypatch.setenv("BGCUT_API_BASE", "http://127.0.0.1:9/")
    backend = RemoteBackend()
    assert backend.api_base == "http://127.0.0.1:9"
    assert backend.identity == "remote:http://127.0.0.1:9"
    assert SECRET not in backend.identity


def test_the_key_never_shows(scripted, caplog):
    server = scripted(_json(404, {"detail": "Image not found or has expired."}))
    backend = RemoteBackend(SECRET, server.url, retry=FAST)
    assert SECRET not in repr(backend) and backend.key_fingerprint in repr(backend)
    with pytest.raises(TypeError) as not_pickled:
        pickle.dumps(backend)
    assert SECRET not in str(not_pickled.value)
    with pytest.raises(NotFoundError) as caught:
        backend.process_image("x", [{"variant_name": "a"}])
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert SECRET not in str(caught.value) and SECRET not in repr(
        pickle.loads(pickle.dumps(caught.value))
    )
    # The key did travel, in the header and nowhere else.
    assert server.requests[0][2]["Authorization"] == f"Bearer {SECRET}"

    # A connection failure after retries: the text names the URL, never the headers.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    down = RemoteBackend(SECRET, f"http://127.0.0.1:{closed_port}", retry=FAST)
    with pytest.raises(APIConnectionError) as refused:
        down.upload_image(b"\x89PNG")
    err = refused.value
    assert not err.maybe_processed
    assert err.__context__ is None and err.__cause__ is None
    assert SECRET not in str(err) and SECRET not in caplog.text
    assert "retry 2" in caplog.text  # connection refused is retried (nothing was sent)
    assert SECRET.encode() not in pickle.dumps(err)


def test_output_urls_are_fetched_without_the_authorization_header(scripted):
    server = scripted((200, {"Content-Type": "image/png"}, b"\x89PNG-bytes"))
    backend = RemoteBackend(SECRET, server.url)
    assert backend.fetch(server.url + "/cdn/out.png?sig=1") == b"\x89PNG-bytes"
    method, path, headers = server.requests[0]
    assert (method, path) == ("GET", "/cdn/out.png?sig=1")
    assert "Authorization" not in headers


def test_non_json_error_pages_get_a_clear_message(scripted):
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    server = scripted((502, {"Content-Type": "text/html"}, page))
    backend = RemoteBackend(SECRET, server.url, retry=FAST)
    with pytest.raises(APIError) as caught:
        backend.upload_image(b"\x89PNG")
    assert caught.value.status == 502
    assert "HTTP 502" in str(caught.value) and "Bad Gateway" in str(caught.value)
    assert len(server.requests) == 3  # 502 is retried: 1 + 2 retries


def test_503_is_retried_then_succeeds(scripted):
    server = scripted(
        _json(503, {"detail": "busy"}),
        _json(503, {"detail": "busy"}, **{"Retry-After": "0"}),
        _json(200, {"unique_filename": "abc"}),
    )
    backend = RemoteBackend(SECRET, server.url, retry=FAST)
    assert backend.upload_image(b"\x89PNG").unique_filename == "abc"
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 402, 404])
def test_client_errors_are_never_retried(scripted, status):
    server = scripted(_json(status, {"detail": f"nope {status}"}))
    backend = RemoteBackend(SECRET, server.url, retry=FAST)
    with pytest.raises(APIError) as caught:
        backend.process_image("abc", [{"variant_name": "a"}])
    assert caught.value.status == status and caught.value.detail == f"nope {status}"
    assert len(server.requests) == 1


def test_process_is_not_repeated_after_an_ambiguous_failure(scripted):
    server = scripted("drop")  # a server that does not advertise Idempotency-Key support
    backend = RemoteBackend(SECRET, server.url, retry=FAST)
    with pytest.raises(APIConnectionError, match="may or may not have been processed") as caught:
        backend.process_image("abc", [{"variant_name": "a"}])
    assert caught.value.maybe_processed
    assert len(server.requests) == 1
    assert server.requests[0][2][IDEMPOTENCY_HEADER]  # sent, for servers that use it
    # upload-image is free: the same failure is retried
    with pytest.raises(APIConnectionError):
        backend.upload_image(b"\x89PNG")
    assert len(server.requests) == 1 + 3


def test_client_side_validation_fails_before_sending(scripted):
    server = scripted(_json(200, {}))
    backend = RemoteBackend(SECRET, server.url)
    with pytest.raises(BadRequestError, match="invalid format"):
        backend.process_image("abc", [{"variant_name": "a", "format": "gif"}])
    with pytest.raises(BadRequestError, match="http"):
        backend.fetch("file:///etc/passwd")
    assert server.requests == []


def test_expired_or_altered_output_urls_are_404_and_download_leaves_no_file(
    bgcut_engine, bgcut_photo, tmp_path
):
    with ServerThread({"k": 10}, tmp_path / "srv", backend=bgcut_engine, url_ttl=2) as server:
        backend = RemoteBackend("k", server.base_url)
        uploaded = backend.upload_image(bgcut_photo(160, 120))
        url = backend.process_image(
            uploaded.unique_filename, [{"variant_name": "a", "quality": "low"}]
        ).output_urls["a"]
        with pytest.raises(NotFoundError):
            backend.fetch(url.replace("signature=", "signature=0"))
        assert backend.fetch(url)[:8] == b"\x89PNG\r\n\x1a\n"
        time.sleep(3.1)
        dest = tmp_path / "out" / "a.png"
        dest.parent.mkdir()
        with pytest.raises(NotFoundError, match="expired"):
            backend.download(url, dest)
        assert not dest.exists()
        assert list(dest.parent.iterdir()) == []  # no temporary file left behind
