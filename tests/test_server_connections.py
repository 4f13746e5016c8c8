"""Connection-level limits (issue 20 item 2): idle, half-sent and trickled connections cannot
lock anyone out. Raw sockets against the project's own server on 127.0.0.1, started by the
test: ``bgcut-nb serve`` with its defaults, or a :class:`ServerThread` with short deadlines so
the tests stay fast. The simulated backend does no segmentation work, so no model is needed.
Clients that stand for other addresses bind 127.0.0.2-9 (Linux routes all of 127/8 to loopback)."""

from __future__ import annotations

import io
import select
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

from bgcut_nb.contract.wire import UPLOAD_PATH
from bgcut_nb.server.connections import ConnectionLimits
from bgcut_nb.testing.server import ServerThread, wait_until_serving
from bgcut_nb.testing.simulator import SimulatorSpec

KEY = "conn-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = SimulatorSpec(process_seconds=(0.01, 0.02))


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _read_until_closed(sock: socket.socket, wait: float) -> tuple[float | None, bytes]:
    """(seconds until the server closed ``sock`` or None past ``wait``, what it sent)."""
    started = time.monotonic()
    data = b""
    while (left := wait - (time.monotonic() - started)) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return time.monotonic() - started, data
        if not chunk:
            return time.monotonic() - started, data
        data += chunk
    return None, data


def _is_open(sock: socket.socket) -> bool:
    try:
        if not select.select([sock], [], [], 0)[0]:
            return True
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def _server(tmp_path, **limits) -> ServerThread:
    return ServerThread(
        {KEY: 100.0}, tmp_path / "srv", simulate=FAST, limits=ConnectionLimits(**limits)
    )


def test_idle_connections_leave_a_normal_request_answered(tmp_path):
    """``bgcut-nb serve`` with its defaults: 255 idle connections (from 8 other loopback
    addresses, each under the per-address cap) do not make a request 503; it is answered
    within 2 s while they are still open."""
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "bgcut_nb", "serve", "--simulate", "--port", str(port),
        "--api-key", KEY, "--storage-dir", str(tmp_path / "store"),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    idle: list[socket.socket] = []
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_serving(proc, base), "serve did not start"
        idle = [_connect(port, f"127.0.0.{2 + i // 32}") for i in range(255)]
        time.sleep(0.5)  # the server has accepted them all
        started = time.monotonic()
        page = requests.get(base + "/openapi.json", timeout=10)
        upload = requests.post(
            base + UPLOAD_PATH, headers=AUTH, files={"image": ("a.png", _png())}, timeout=10
        )
        elapsed = time.monotonic() - started
        assert page.status_code == 200, page.text
        assert upload.status_code == 200, upload.text
        assert elapsed < 2.0
        assert all(_is_open(sock) for sock in idle)  # they were held all along
        # 127.0.0.2 holds 32 of them: the default cap refuses its 33rd (only 127.0.0.1 and
        # ::1 are trusted proxies by default)
        with _connect(port, "127.0.0.2") as sock:
            sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_until_closed(sock, 5)[1].startswith(b"HTTP/1.1 429")
    finally:
        for sock in idle:
            sock.close()
        proc.terminate()
        proc.wait(30)


def test_idle_connections_do_not_count_against_the_request_limit(tmp_path):
    """``limit_concurrency`` counts requests being handled, not open connections."""
    spec = SimulatorSpec(process_seconds=(0.01, 0.02), latency=1.0)
    limits = ConnectionLimits(limit_concurrency=2)
    with ServerThread({KEY: 100.0}, tmp_path / "srv", simulate=spec, limits=limits) as server:
        idle = [_connect(server.port) for _ in range(8)]
        try:
            url = server.base_url + "/openapi.json"
            assert requests.get(url, timeout=10).status_code == 200
            with ThreadPoolExecutor(3) as pool:  # three at once, each held 1 s: one too many
                answers = list(pool.map(lambda _: requests.get(url, timeout=10), range(3)))
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200, 200, 503], statuses
            refused = next(a for a in answers if a.status_code == 503)
            assert refused.headers["Retry-After"] == "1"
            assert "requests are being handled" in refused.json()["detail"]
        finally:
            for sock in idle:
                sock.close()


def test_idle_connections_are_closed_by_the_head_and_keep_alive_deadlines(tmp_path):
    with _server(tmp_path, head_timeout=1.0, keep_alive=0.5) as server:
        fresh = [_connect(server.port) for _ in range(10)]
        kept = _connect(server.port)
        kept.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        assert all(_is_open(sock) for sock in [*fresh, kept])  # not closed at once
        for sock in fresh:
            closed, data = _read_until_closed(sock, 3.0)
            assert closed is not None and data == b""  # closed after ~1 s, nothing said
            sock.close()
        closed, data = _read_until_closed(kept, 3.0)
        assert closed is not None and data.startswith(b"HTTP/1.1 200")  # answered, then idle
        kept.close()


def test_a_half_sent_header_line_is_closed_by_the_head_deadline(tmp_path):
    """Even a head that keeps trickling in (a byte every 0.2 s) has 1 s in all."""
    with _server(tmp_path, head_timeout=1.0) as server:
        sock = _connect(server.port)
        started = time.monotonic()
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        closed = None
        data = b""
        while time.monotonic() - started < 5 and closed is None:
            try:
                sock.sendall(b"a")
            except OSError:
                break
            closed, more = _read_until_closed(sock, 0.2)
            data += more
        elapsed = time.monotonic() - started
        sock.close()
        assert 0.8 < elapsed < 2.5, elapsed
        assert data.startswith(b"HTTP/1.1 408"), data
        assert b"request head took over 1 s" in data


_PART = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'


def _trickle(
    sock: socket.socket, head: bytes, interval: float, give_up: float, piece: bytes = b"a"
) -> tuple:
    """Send ``head`` then ``piece`` (a byte of the image) every ``interval`` s until the
    server closes the connection; (seconds it survived, what the server sent)."""
    sock.sendall(head)
    started = time.monotonic()
    data = b""
    while time.monotonic() - started < give_up:
        try:
            sock.sendall(piece)
        except OSError:
            return time.monotonic() - started, data
        closed, more = _read_until_closed(sock, interval)
        data += more
        if closed is not None:
            return time.monotonic() - started, data
    return None, data


def _upload_head(length: int | None, auth: bool = True) -> bytes:
    lines = [f"POST {UPLOAD_PATH} HTTP/1.1", "Host: x"]
    lines += [f"Authorization: Bearer {KEY}"] if auth else []
    lines += ["Content-Type: multipart/form-data; boundary=xyz"]
    if length is None:
        lines.append("Transfer-Encoding: chunked")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + b"%x\r\n%s\r\n" % (len(_PART), _PART)
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + _PART


def test_a_trickled_upload_is_cut_off_by_its_whole_body_deadline(tmp_path):
    """One byte every 0.25 s never trips the per-chunk stall (15 s) but the whole body gets
    ``body_timeout + length / min_body_rate`` = 1 + 20000 / 10000 = 3 s; a body sent at speed
    is unaffected."""
    with _server(tmp_path, body_timeout=1.0, min_body_rate=10_000) as server:
        with _connect(server.port) as sock:
            survived, data = _trickle(sock, _upload_head(20_000), 0.25, give_up=10)
        assert survived is not None and 2.5 < survived < 4.5, survived
        assert data.startswith(b"HTTP/1.1 408"), data
        assert b"request body took over" in data
        ok = requests.post(
            server.base_url + UPLOAD_PATH, headers=AUTH, files={"image": ("a.png", _png())}
        )
        assert ok.status_code == 200, ok.text


def test_a_trickled_chunked_body_must_keep_up_the_minimum_rate(tmp_path):
    with _server(tmp_path, body_timeout=1.0, min_body_rate=10_000) as server:
        with _connect(server.port) as sock:
            survived, _ = _trickle(sock, _upload_head(None), 0.25, 10, piece=b"1\r\na\r\n")
        assert survived is not None and 0.8 < survived < 2.5, survived


def test_a_body_answered_early_cannot_be_trickled_on(tmp_path):
    """A refused upload (401, no key) announcing 1 GB: the rest of the body, which the server
    only discards, must keep up the rate from the answer on, whatever Content-Length said."""
    with _server(tmp_path, body_timeout=1.0, min_body_rate=10_000) as server:
        with _connect(server.port) as sock:
            survived, data = _trickle(sock, _upload_head(10**9, auth=False), 0.25, give_up=10)
        assert data.startswith(b"HTTP/1.1 401"), data
        assert survived is not None and survived < 2.5, survived


def _get(port: int, source: str) -> bytes:
    """A raw GET of the OpenAPI document from ``source``: what the server answers."""
    with _connect(port, source) as sock:
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return _read_until_closed(sock, 5)[1]


def test_open_connections_per_address_are_capped(tmp_path):
    """At most 4 open per address (then 429 with Retry-After); other addresses and trusted
    proxies (``forwarded_allow_ips``, whose connections carry many clients) are unaffected."""
    with _server(tmp_path, max_connections_per_ip=4, forwarded_allow_ips="127.0.0.1") as server:
        held = [_connect(server.port, "127.0.0.2") for _ in range(4)]
        refused = _get(server.port, "127.0.0.2")
        assert refused.startswith(b"HTTP/1.1 429"), refused
        assert b"retry-after: 1" in refused.lower() and b"at most 4" in refused
        assert _get(server.port, "127.0.0.3").startswith(b"HTTP/1.1 200")
        proxy = [_connect(server.port) for _ in range(6)]
        assert requests.get(server.base_url + "/openapi.json", timeout=10).status_code == 200
        held.pop().close()
        time.sleep(0.2)
        assert _get(server.port, "127.0.0.2").startswith(b"HTTP/1.1 200")  # a slot is free
        for sock in held + proxy:
            sock.close()


def test_connections_beyond_the_total_cap_are_closed_at_once(tmp_path):
    with _server(tmp_path, max_connections=5) as server:
        held = [_connect(server.port, f"127.0.0.{2 + i}") for i in range(5)]
        time.sleep(0.2)
        with _connect(server.port, "127.0.0.9") as extra:
            closed, data = _read_until_closed(extra, 2.0)
            assert closed is not None and closed < 1.0 and data == b""
        held.pop().close()
        time.sleep(0.2)
        assert _get(server.port, "127.0.0.9").startswith(b"HTTP/1.1 200")
        for sock in held:
            sock.close()
