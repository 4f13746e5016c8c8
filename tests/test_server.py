"""Server behaviour beyond the conformance suite: idempotent charging, size limit, raw errors,
keys files and the ``serve`` command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from bgcut_nb import PayloadTooLargeError
from bgcut_nb.backends.remote import IDEMPOTENCY_HEADER, PROCESS_PATH, UPLOAD_PATH, RemoteBackend
from bgcut_nb.server.keys import load_keys_file
from bgcut_nb.testing.server import ServerThread

KEY = "server-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def server(bgcut_engine, tmp_path):
    with ServerThread(
        {KEY: 10.0}, tmp_path / "srv", backend=bgcut_engine, rate_limit=0, max_upload_bytes=50_000
    ) as s:
        yield s


def _upload(server, data) -> str:
    answer = requests.post(server.base_url + UPLOAD_PATH, headers=AUTH, files={"image": data})
    assert answer.status_code == 200, answer.text
    return answer.json()["unique_filename"]


def test_a_repeated_idempotency_key_is_answered_without_a_second_charge(server, bgcut_photo):
    name = _upload(server, bgcut_photo(160, 120))
    body = {"unique_filename": name, "output_variants": [{"variant_name": "a", "quality": "low"}]}
    headers = {**AUTH, IDEMPOTENCY_HEADER: "call-1"}
    first = requests.post(server.base_url + PROCESS_PATH, headers=headers, json=body)
    again = requests.post(server.base_url + PROCESS_PATH, headers=headers, json=body)
    assert first.status_code == again.status_code == 200
    assert first.headers["Bgcut-Idempotency"] == "process-image"
    assert server.credits(KEY) == 9.0  # charged once
    assert requests.get(again.json()["output_urls"]["a"]).content == (
        requests.get(first.json()["output_urls"]["a"]).content
    )
    body["output_variants"][0]["format"] = "jpg"
    changed = requests.post(server.base_url + PROCESS_PATH, headers=headers, json=body)
    assert changed.status_code == 400 and "Idempotency-Key" in changed.json()["detail"]
    fresh = requests.post(server.base_url + PROCESS_PATH, headers=AUTH, json=body)
    assert fresh.status_code == 200 and server.credits(KEY) == 8.0


def test_input_url_serves_the_original_upload(server, bgcut_photo):
    data = bgcut_photo(160, 120)
    backend = RemoteBackend(KEY, server.base_url)
    name = backend.upload_image(data).unique_filename
    result = backend.process_image(name, [{"variant_name": "a", "quality": "low"}])
    assert backend.fetch(result.input_url) == data
    assert "/input." in result.input_url and "signature=" in result.input_url


def test_uploads_over_the_limit_are_413_and_not_retried(server):
    big = os.urandom(2_000_000)  # the size is refused before anything is decoded
    backend = RemoteBackend(KEY, server.base_url)
    with pytest.raises(PayloadTooLargeError, match="limited to"):
        backend.upload_image(big)
    assert server.stats["upload"] == 1
    # a body just over the image limit but within the multipart allowance: checked on the file
    medium = os.urandom(60_000)
    with pytest.raises(PayloadTooLargeError):
        backend.upload_image(medium)


@pytest.mark.parametrize(
    "body, detail",
    [
        (b"{not json", "Malformed JSON body"),
        (b'["a"]', "must be a JSON object"),
        (b'{"unique_filename": "x"}', "output_variants is required"),
        (b'{"output_variants": []}', "unique_filename is required"),
        (b'{"unique_filename": "x", "output_variants": [], "extra": 1}', "Unknown field"),
        (b'{"unique_filename": "x", "output_variants": [{"variant_name": null}]}', "variant_name"),
        (
            b'{"unique_filename": "x", "output_variants": [{"variant_name": "a", "format": 1}]}',
            "format",
        ),
        (
            b'{"unique_filename": "x", "output_variants": [{"variant_name": "a", "fromat": 1}]}',
            "Variant 'a': unknown field(s) ['fromat']; did you mean 'format'?",
        ),
        (
            b'{"unique_filename": "x", "output_variants": [{"variant_name": "a", "format": "jp"}]}',
            "invalid format 'jp'. Options: png, jpg, webp; did you mean 'jpg'?",
        ),
    ],
)
def test_malformed_process_requests_are_400_with_a_detail(server, body, detail):
    answer = requests.post(
        server.base_url + PROCESS_PATH,
        headers={**AUTH, "Content-Type": "application/json"},
        data=body,
    )
    assert answer.status_code == 400
    assert detail in answer.json()["detail"]


def test_upload_without_the_image_field_is_400(server):
    answer = requests.post(server.base_url + UPLOAD_PATH, headers=AUTH, files={"file": b"x"})
    assert answer.status_code == 400
    assert answer.json() == {
        "detail": "Missing image: send the file as multipart/form-data field 'image'"
    }
    answer = requests.post(server.base_url + UPLOAD_PATH, headers=AUTH, json={"image": "x"})
    assert answer.status_code == 400


def test_the_database_holds_hashes_never_keys(server, bgcut_photo):
    _upload(server, bgcut_photo(160, 120))
    raw = (server.storage_dir / "server.sqlite3").read_bytes()
    wal = server.storage_dir / "server.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert KEY.encode() not in raw
    assert server.app.state.service.key_hash(KEY).encode() in raw


def test_keys_file_format(tmp_path):
    good = tmp_path / "keys.json"
    good.write_text(json.dumps({"alice-key": 500, "bob-key": 2.5}))
    assert load_keys_file(good) == {"alice-key": 500, "bob-key": 2.5}
    for text, message in [
        ("{", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"alice-key": -1}', "must be a number >= 0"),
        ('{"alice-key": "lots"}', "must be a number >= 0"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message) as caught:
            load_keys_file(bad)
        assert "alice-key" not in str(caught.value)


def test_serve_command_runs_the_server(tmp_path, bgcut_photo):
    """``bgcut-nb serve --api-key KEY --credits N`` in a real subprocess, plus a keys file."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"file-key": 3}))
    command = [
        sys.executable, "-m", "bgcut_nb", "serve", "--port", str(port),
        "--api-key", "cli-key", "--credits", "7", "--keys-file", str(keys),
        "--storage-dir", str(tmp_path / "store"),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(base + "/openapi.json", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        for key in ("cli-key", "file-key"):
            backend = RemoteBackend(key, base)
            assert backend.upload_image(bgcut_photo(120, 90)).unique_filename
        with pytest.raises(Exception, match="401"):
            RemoteBackend("nobody", base).upload_image(bgcut_photo(120, 90))
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "cli-key" not in output and "file-key" not in output  # logs never show keys
