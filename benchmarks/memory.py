"""Memory per decode: 6 concurrent uploads and 6 process calls of a 16-bit 8000x8000 PNG.

    python benchmarks/memory.py [--calls 6] [--side 8000]

Generates the greyscale 16-bit PNG itself (a ramp: ~140 KB that decodes to 64 MP), starts
``bgcut-nb serve`` in a subprocess on 127.0.0.1 (default workers: one per core), fires
``--calls`` concurrent uploads, then ``--calls`` concurrent process calls (one ``cutout``
variant each), and prints the server's peak RSS in each phase (sampled every 50 ms) and the
RSS left a few seconds after the last call. Target (issue 20): the uploads stay under 1.5 GB
peak. Figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import AUTH, Sampler, call, start_server  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgcut_nb.contract.wire import UPLOAD_PATH  # noqa: E402

UPLOAD_TARGET = 1.5 * 2**30


def ramp_png16(side: int) -> bytes:
    """A 16-bit greyscale PNG, ``side`` x ``side``: a horizontal ramp over 0..65535."""
    row = (np.arange(side, dtype=np.uint32) * 65535 // max(1, side - 1)).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.broadcast_to(row, (side, side)))).save(buffer, "PNG")
    return buffer.getvalue()


def phase(sampler: Sampler, jobs: int, work) -> tuple[float, list]:
    """Run ``work(i)`` for ``jobs`` at once; the server's peak RSS meanwhile (bytes)."""
    sampler.peak = 0
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(work, range(jobs)))
    time.sleep(0.2)
    return sampler.peak, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--side", type=int, default=8000)
    args = parser.parse_args()
    data = ramp_png16(args.side)
    gib = lambda n: f"{n / 2**30:.2f}"  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="bgcut-memory-") as tmp:
        proc, base = start_server(Path(tmp) / "store")
        sampler = Sampler(proc.pid)
        sampler.start()
        try:
            time.sleep(1)
            idle = psutil.Process(proc.pid).memory_info().rss

            def upload(_: int) -> str:
                answer = requests.post(
                    base + UPLOAD_PATH, headers=AUTH, files={"image": data}, timeout=600
                )
                answer.raise_for_status()
                return answer.json()["unique_filename"]

            upload_peak, names = phase(sampler, args.calls, upload)
            variants = [{"variant_name": "cutout"}]
            process_peak, results = phase(
                sampler, args.calls, lambda i: call(base, names[i], variants, [])
            )
            time.sleep(3)
            residual = psutil.Process(proc.pid).memory_info().rss
        finally:
            sampler.stop.set()
            proc.terminate()
            proc.wait(30)
    statuses = [code for _, code in results]
    rows = [
        ("input", f"{args.side}x{args.side} 16-bit grey PNG, {len(data) / 1024:.0f} KB"),
        ("server idle RSS, GiB", gib(idle)),
        (f"peak RSS, {args.calls} concurrent uploads, GiB", gib(upload_peak)),
        (f"peak RSS, {args.calls} concurrent process calls, GiB", gib(process_peak)),
        ("RSS 3 s after the last call, GiB", gib(residual)),
        ("process answers", sorted(set(statuses))),
    ]
    for label, value in rows:
        print(f"{label:44} {value}")
    ok = upload_peak < UPLOAD_TARGET and statuses == [200] * args.calls
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
