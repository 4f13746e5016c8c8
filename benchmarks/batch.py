"""The batch runner against the project's v3 server on loopback, with injected latency.

    python benchmarks/batch.py [--images 64] [--latency 0.1] [--workers N] [--quality low]

Starts the server (``ServerThread``, local engine, no rate limit) behind the fault proxy set to
delay every request by ``--latency`` seconds, makes ``--images`` distinct small photos, and
times, on fresh uploads each:

1. the spec's request loop, sequential (upload, process with 3 variants, download each output);
2. ``df.bgcut.process`` with the same 3 variants and default (or ``--workers``) threads;
3. the same ``df.bgcut.process`` call again (warm: everything cached).

Prints wall times, ratios and the HTTP requests each run made, as the server counted them.
Server-side work (segmentation on this machine's CPU) is part of every cold run's time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

KEY = "bench-key"


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` distinct photos: a coloured disc on a light background, shifted per image."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < (min(w, h) * rng.uniform(0.2, 0.35)) ** 2
        colour = rng.integers(20, 200, size=3)
        noise = rng.normal(0, 3, size=(h, w, 1))
        rgb = np.where(disc[..., None], colour, [226, 230, 234]) + noise
        path = folder / f"photo{i:03d}.jpg"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def variants(quality: str) -> list[dict]:
    """The spec's three example variants (one quality tier, so one matte per image)."""
    return [
        {"variant_name": "full", "format": "png", "quality": quality},
        {
            "variant_name": "thumbnail",
            "max_resolution": 250_000,
            "format": "webp",
            "quality": quality,
            "autocrop": True,
        },
        {
            "variant_name": "white_bg",
            "format": "jpg",
            "quality": quality,
            "background_color": "#ffffff",
            "output_compression": 85,
        },
    ]


def spec_loop(api_base: str, photos: list[Path], output_variants: list[dict], out: Path) -> None:
    """The spec's example, one image after another, saving each output URL's bytes."""
    import requests

    headers = {"Authorization": f"Bearer {KEY}"}
    out.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        with open(photo, "rb") as f:
            upload_response = requests.post(
                f"{api_base}/v3/remove-bg/upload-image/",
                headers=headers,
                files={"image": f},
                timeout=60,
            )
        upload_response.raise_for_status()
        unique_filename = upload_response.json()["unique_filename"]
        result = requests.post(
            f"{api_base}/v3/remove-bg/process-image/",
            headers={**headers, "Content-Type": "application/json"},
            json={"unique_filename": unique_filename, "output_variants": output_variants},
            timeout=300,
        )
        result.raise_for_status()
        for name, url in result.json()["output_urls"].items():
            response = requests.get(url, timeout=60)
            response.raise_for_status()
            (out / f"{photo.stem}-{name}").write_bytes(response.content)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    parser.add_argument("--workers", type=int, default=None, help="default: the batch default")
    parser.add_argument("--quality", default="low", choices=("low", "medium", "high"))
    parser.add_argument("--size", type=int, nargs=2, default=(160, 120), metavar=("W", "H"))
    args = parser.parse_args()

    import pandas as pd

    import bgcut_nb  # noqa: F401 - registers df.bgcut
    from bgcut_nb.backends.local import LocalBackend
    from bgcut_nb.backends.remote import RemoteBackend
    from bgcut_nb.server.faults import FaultSpec
    from bgcut_nb.server.testing import ServerThread

    with tempfile.TemporaryDirectory(prefix="bgcut-bench-") as tmp:
        root = Path(tmp)
        os.environ["BGCUT_CACHE_DIR"] = str(root / "client-cache")
        photos = make_photos(root / "photos", args.images, tuple(args.size))
        chosen = variants(args.quality)
        engine = LocalBackend(root / "engine")
        # load the model before timing anything, then time the server's own work per image
        warm = engine.upload_image(photos[0]).unique_filename
        engine.process_image(warm, chosen[:1])
        start = time.perf_counter()
        for photo in photos[1:4]:
            engine.process_image(engine.upload_image(photo).unique_filename, chosen)
        compute = (time.perf_counter() - start) / len(photos[1:4])
        faults = FaultSpec(rate=1.0, kinds=("latency",), latency=args.latency)
        rows = []
        with ServerThread(
            {KEY: 1e9}, root / "server", backend=engine, rate_limit=0, faults=faults
        ) as server:
            backend = RemoteBackend(KEY, server.base_url)
            workers = args.workers or backend.default_workers
            df = pd.DataFrame({"path": [str(p) for p in photos]})

            def measure(label: str, fn) -> None:
                before = dict(server.stats)
                start = time.perf_counter()
                fn()
                seconds = time.perf_counter() - start
                counts = {k: server.stats[k] - before.get(k, 0) for k in ("upload", "process")}
                counts["file"] = server.stats["file"] - before.get("file", 0)
                rows.append((label, seconds, counts))
                print(f"  {label}: {seconds:.2f} s", file=sys.stderr)

            print(
                f"{args.images} images x {len(chosen)} variants, quality {args.quality}, "
                f"{args.latency * 1000:.0f} ms per request, {os.cpu_count()} CPUs; "
                f"server-side engine work {compute:.2f} s per image",
                file=sys.stderr,
            )
            measure(
                "spec's sequential loop",
                lambda: spec_loop(server.base_url, photos, chosen, root / "loop-out"),
            )

            def batch() -> None:
                out = df.bgcut.process(
                    chosen,
                    backend=backend,
                    out_dir=root / "batch-out",
                    max_workers=workers,
                    progress=False,
                )
                failed = (out["bgcut_error"] != "").sum()
                if failed:
                    raise SystemExit(f"{failed} rows failed: {out['bgcut_error'].iloc[0]}")

            measure(f"df.bgcut.process ({workers} workers)", batch)
            measure("df.bgcut.process again (warm)", batch)
            backend.close()  # close keep-alive connections before the proxy stops

    base = rows[0][1]
    print()
    print(
        f"{args.images} images x {len(chosen)} variants (quality {args.quality}, "
        f"{args.size[0]}x{args.size[1]}), {args.latency * 1000:.0f} ms added to every request; "
        f"the server's engine needs {compute:.2f} s of CPU per image on {os.cpu_count()} CPUs."
    )
    print()
    print("| run | wall time | speed-up vs loop | HTTP requests (upload / process / file) |")
    print("| --- | ---: | ---: | --- |")
    for label, seconds, c in rows:
        total = c["upload"] + c["process"] + c["file"]
        print(
            f"| {label} | {seconds:.2f} s | {base / seconds:.1f}x | "
            f"{total} ({c['upload']} / {c['process']} / {c['file']}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
