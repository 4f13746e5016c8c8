"""Load: many concurrent process calls against ``bgcut-nb serve`` with default settings.

    python benchmarks/load.py [--small 50] [--large 4] [--large-mp 24]

Starts the server in a subprocess on 127.0.0.1 (default workers and queue: one worker per
core, two queued per worker), uploads the photos, then fires ``--small`` concurrent process
calls on small photos and ``--large`` on a ``--large-mp`` megapixel photo (the spec's three
variants), each retried by the client on 429 as ``RemoteBackend`` does. Prints the server's
peak RSS (sampled every 50 ms, children included), p50/p95 latency, calls refused (429
answers seen, before retries) and whether the server survived. Figures are noisy on a shared
machine; targets: peak RSS <= 3 GB on 2 cores, zero crashes.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bgcut_nb.contract.variants import SPEC_EXAMPLE_VARIANTS  # noqa: E402
from bgcut_nb.contract.wire import PROCESS_PATH, UPLOAD_PATH  # noqa: E402
from bgcut_nb.testing.server import wait_until_serving  # noqa: E402

KEY = "load-bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def photo(width: int, height: int, seed: int) -> bytes:
    """A JPEG: a coloured disc with texture on a light background."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 3) ** 2
    colour = rng.integers(30, 220, 3)
    rgb = np.where(disc[..., None], colour, [228, 232, 236]).astype(np.float32)
    rgb += rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def start_server(
    storage: Path, extra: list[str] | None = None, key: str = KEY
) -> tuple[subprocess.Popen, str]:
    """``bgcut-nb serve`` on a free loopback port (``extra``: its options, default unlimited
    credits and no rate limit); the process and its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if extra is None:
        extra = ["--credits", "100000", "--rate-limit", "0"]
    command = [
        sys.executable, "-m", "bgcut_nb", "serve", "--port", str(port), "--api-key", key,
        "--storage-dir", str(storage), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    if not wait_until_serving(proc, base):
        raise SystemExit("the server did not start")
    return proc, base


class Sampler(threading.Thread):
    """Peak RSS of a process and its children."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                rss = self.proc.memory_info().rss
                rss += sum(c.memory_info().rss for c in self.proc.children(recursive=True))
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)


def call(base: str, name: str, variants: list[dict], refused: list[int]) -> tuple[float, int]:
    """One process call, retried on 429 after Retry-After; ``(seconds, final status)``."""
    started = time.perf_counter()
    for _ in range(200):
        answer = requests.post(
            base + PROCESS_PATH,
            headers=AUTH,
            json={"unique_filename": name, "output_variants": variants},
            timeout=600,
        )
        if answer.status_code != 429:
            return time.perf_counter() - started, answer.status_code
        refused.append(1)
        time.sleep(float(answer.headers.get("Retry-After", "1")))
    return time.perf_counter() - started, 429


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--large-mp", type=float, default=24.0)
    args = parser.parse_args()
    variants = [v.to_dict() for v in SPEC_EXAMPLE_VARIANTS]
    small_variants = [dict(v, quality="low") for v in variants]
    with tempfile.TemporaryDirectory(prefix="bgcut-load-") as tmp:
        proc, base = start_server(Path(tmp) / "store")
        sampler = Sampler(proc.pid)
        sampler.start()
        try:
            upload = lambda data: requests.post(  # noqa: E731
                base + UPLOAD_PATH, headers=AUTH, files={"image": data}, timeout=120
            ).json()["unique_filename"]
            smalls = [upload(photo(640, 480, i)) for i in range(args.small)]
            w = int((args.large_mp * 1e6 * 1.5) ** 0.5)
            larges = [upload(photo(w, int(w / 1.5), 1000 + i)) for i in range(args.large)]
            refused: list[int] = []
            jobs = [(n, small_variants) for n in smalls] + [(n, variants) for n in larges]
            started = time.perf_counter()
            with ThreadPoolExecutor(len(jobs)) as pool:
                results = list(pool.map(lambda job: call(base, *job, refused), jobs))
            wall = time.perf_counter() - started
            alive = proc.poll() is None
        finally:
            sampler.stop.set()
            proc.terminate()
            proc.wait(30)
    seconds = sorted(s for s, _ in results)
    statuses = [code for _, code in results]
    p95 = seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))]
    rows = [
        ("calls (small + large)", f"{args.small} + {args.large} ({args.large_mp:g} MP)"),
        ("answered 200", statuses.count(200)),
        ("other answers", sorted(set(statuses) - {200}) or "none"),
        ("429 answers seen (then retried)", len(refused)),
        ("p50 / p95 latency, s", f"{statistics.median(seconds):.1f} / {p95:.1f}"),
        ("wall time, s", f"{wall:.1f}"),
        ("server peak RSS, GiB", f"{sampler.peak / 2**30:.2f}"),
        ("server alive at the end", alive),
    ]
    for label, value in rows:
        print(f"{label:34} {value}")
    ok = alive and statuses.count(200) == len(jobs) and sampler.peak <= 3 * 2**30
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
