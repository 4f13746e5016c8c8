"""Slowloris: idle, half-sent and trickled connections against ``bgcut-nb serve``.

    python benchmarks/slowloris.py [--idle 255] [--cap 60] [--url http://127.0.0.1:8000]

Without ``--url`` it starts ``bgcut-nb serve --simulate`` with default connection settings
(``--serve-args`` adds options) in a subprocess on 127.0.0.1. Then, all at once:

* opens ``--idle`` TCP connections that never send a byte and times a normal request (GET
  ``/openapi.json``) and a small authenticated upload made while they are open;
* counts how many of the idle connections the server has closed after ``--watch`` seconds;
* sends half a header line and times how long the server keeps that connection open;
* trickles an upload (``Content-Length`` 100000, one byte every ``--trickle-interval``
  seconds) and times how long it survives.

Every wait stops at ``--cap`` seconds ("still open"). The figures are wall-clock times on
loopback and noisy on a shared machine; the targets are a normal request answered (not 503)
within 2 s and every slow connection closed by its deadline.
"""

from __future__ import annotations

import argparse
import io
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import load  # noqa: E402 - benchmarks/load.py: starting the server

from bgcut_nb.contract.wire import UPLOAD_PATH  # noqa: E402

KEY = "slowloris-bench-key"


def start_server(storage: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """``bgcut-nb serve --simulate`` with ``extra`` options (load.py starts it)."""
    return load.start_server(storage, ["--simulate", *extra], key=KEY)


def is_closed(sock: socket.socket) -> bool:
    """Whether the peer has closed ``sock`` (without waiting)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(65536, socket.MSG_PEEK) == b""
    except OSError:  # reset by the server
        return True


def wait_closed(sock: socket.socket, cap: float) -> float | None:
    """Seconds until the server closes ``sock`` (whatever it answers first), None past ``cap``."""
    started = time.monotonic()
    while (left := cap - (time.monotonic() - started)) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except OSError:
            return time.monotonic() - started
    return None


def half_header(address: tuple[str, int], cap: float, out: dict) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        out["half-sent header line"] = wait_closed(sock, cap)


def trickle(address: tuple[str, int], interval: float, cap: float, out: dict) -> None:
    head = (
        f"POST {UPLOAD_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    with socket.create_connection(address) as sock:
        sock.sendall(head)
        started = time.monotonic()
        survived = None
        while time.monotonic() - started < cap:
            try:
                sock.sendall(b"-")
            except OSError:
                survived = time.monotonic() - started
                break
            if wait_closed(sock, interval) is not None:
                survived = time.monotonic() - started
                break
        out[f"trickled upload (1 byte / {interval:g} s)"] = survived


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an already running server (default: start one)")
    parser.add_argument("--serve-args", default="", help="extra options for bgcut-nb serve")
    parser.add_argument("--idle", type=int, default=255, help="idle connections to hold")
    parser.add_argument("--watch", type=float, default=15.0, help="when to count closed ones, s")
    parser.add_argument("--trickle-interval", type=float, default=1.0, help="seconds per byte")
    parser.add_argument("--cap", type=float, default=60.0, help="longest wait, s")
    args = parser.parse_args()

    proc = None
    with tempfile.TemporaryDirectory(prefix="bgcut-slowloris-") as tmp:
        if args.url:
            base = args.url.rstrip("/")
        else:
            proc, base = start_server(Path(tmp), shlex.split(args.serve_args))
        parts = urlsplit(base)
        address = (parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            results: dict[str, float | None] = {}
            probes = [
                threading.Thread(target=half_header, args=(address, args.cap, results)),
                threading.Thread(
                    target=trickle, args=(address, args.trickle_interval, args.cap, results)
                ),
            ]
            for probe in probes:
                probe.start()
            idle = [socket.create_connection(address) for _ in range(args.idle)]
            time.sleep(0.5)  # let the server accept them all
            started = time.monotonic()
            answer = requests.get(base + "/openapi.json", timeout=args.cap)
            get_seconds = time.monotonic() - started
            started = time.monotonic()
            upload = requests.post(
                base + UPLOAD_PATH,
                headers={"Authorization": f"Bearer {KEY}"},
                files={"image": ("a.png", small_png(), "image/png")},
                timeout=args.cap,
            )
            upload_seconds = time.monotonic() - started
            print(f"server: {base}")
            print(f"with {args.idle} idle connections open:")
            print(f"  GET /openapi.json: {answer.status_code} in {get_seconds:.2f} s")
            print(f"  upload-image:      {upload.status_code} in {upload_seconds:.2f} s")
            time.sleep(max(0.0, args.watch - (time.monotonic() - started)))
            closed = sum(is_closed(sock) for sock in idle)
            print(f"  idle connections closed by the server after {args.watch:g} s: "
                  f"{closed} of {args.idle}")  # fmt: skip
            for sock in idle:
                sock.close()
            for probe in probes:
                probe.join()
            for name, seconds in results.items():
                shown = f"closed after {seconds:.1f} s" if seconds is not None else "still open"
                print(f"{name}: {shown} (cap {args.cap:g} s)")
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
