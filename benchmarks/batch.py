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

    python benchmarks/batch.py --simulate [--images 200] [--plans 120,500] [--latency 0.1]
        [--process-seconds 1-3] [--loop-images N] [--learn]

Against the service simulator instead (``ServerThread(simulate=...)``: processing is a seeded
sleep of 1-3 s, so this machine's CPU is not what is measured), once per plan: the plan's
limit in requests per minute (upload and process count; output files do not, as on the real
service's CDN), the client configured with the same ``requests_per_minute`` (``--learn``: also a
run that learns it from 429s). Prints the achieved requests per minute as a share of the plan,
the 429s the client saw and the server sent, failed rows, the peak in-flight limit, and the
speed-up over the spec's sequential loop on the same work (the loop runs once, below either
plan's limit; ``--loop-images`` times it on fewer images and scales it up).
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


def simulate(args: argparse.Namespace) -> int:
    """The ``--simulate`` mode: the batch at each plan's limit vs the spec's loop."""
    import pandas as pd

    import bgcut_nb  # noqa: F401 - registers df.bgcut
    from bgcut_nb.backends.remote import RemoteBackend
    from bgcut_nb.testing.server import ServerThread
    from bgcut_nb.testing.simulator import SimulatorSpec

    plans = [float(p) for p in args.plans.split(",")]
    images = args.images or 200
    loop_images = min(args.loop_images or images, images)
    chosen = variants(args.quality)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bgcut-bench-") as tmp:
        root = Path(tmp)
        photos = make_photos(root / "photos", images, tuple(args.size))
        df = pd.DataFrame({"path": [str(p) for p in photos]})

        def spec_of(rpm: float) -> SimulatorSpec:
            return SimulatorSpec(
                process_seconds=args.process_seconds, latency=args.latency, plan_rpm=rpm, seed=0
            )

        print(
            f"{images} images x {len(chosen)} variants, simulated processing "
            f"{args.process_seconds} s, {args.latency * 1000:.0f} ms per request",
            file=sys.stderr,
        )
        runs = [(rpm, rpm) for rpm in plans] + (
            [(rpm, None) for rpm in plans] if args.learn else []
        )
        for n, (rpm, configured) in enumerate(runs):
            with ServerThread({KEY: 1e9}, root / f"server{n}", simulate=spec_of(rpm)) as server:
                backend = RemoteBackend(KEY, server.base_url, requests_per_minute=configured)
                start = time.perf_counter()
                out = df.bgcut.process(
                    chosen,
                    backend=backend,
                    out_dir=root / f"out{n}",
                    cache=root / f"cache{n}",
                    progress=False,
                )
                seconds = time.perf_counter() - start
                backend.close()
                stats = out.bgcut.stats
                counted = server.stats["upload"] + server.stats["process"]
                rows.append(
                    dict(
                        rpm=rpm,
                        configured=configured,
                        seconds=seconds,
                        uploads=server.stats["upload"],
                        processes=server.stats["process"],
                        files=server.stats["file"],
                        achieved=counted / seconds * 60,
                        client_429=stats["rate_limited"],
                        server_429=server.stats["rate_limited"],
                        failed=int((out["bgcut_error"] != "").sum()),
                        peak=stats["concurrency"],
                    )
                )
                print(f"  plan {rpm:g}/min, client {configured}: {seconds:.1f} s", file=sys.stderr)
        with ServerThread({KEY: 1e9}, root / "loop-server", simulate=spec_of(max(plans))) as server:
            start = time.perf_counter()
            spec_loop(server.base_url, photos[:loop_images], chosen, root / "loop-out")
            loop = (time.perf_counter() - start) * images / loop_images
            loop_counts = (server.stats["upload"], server.stats["process"], server.stats["file"])
        print(f"  spec's sequential loop: {loop:.1f} s", file=sys.stderr)

    scaled = "" if loop_images == images else f" (timed on {loop_images} images, scaled)"
    print()
    print(
        f"{images} images x {len(chosen)} variants against the simulator: processing drawn from "
        f"{args.process_seconds} s (seed 0), {args.latency * 1000:.0f} ms added to every "
        f"request; upload and process count against the plan, output files do not; "
        f"{os.cpu_count()} CPUs."
    )
    print()
    print(
        "| run | plan | wall time | requests (upload / process / file) | achieved req/min "
        "| share of plan | 429s (client / server) | rows failed | peak in flight "
        "| speed-up vs loop |"
    )
    print("| --- | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |")
    u, p, f = loop_counts
    print(
        f"| spec's sequential loop{scaled} | {max(plans):g}/min | {loop:.1f} s | "
        f"{u + p + f} ({u} / {p} / {f}) | {(u + p) / (loop * loop_images / images) * 60:.0f} "
        f"| - | 0 / 0 | 0 | 1 | 1.0x |"
    )
    for r in rows:
        how = "plan configured" if r["configured"] else "plan learnt from 429s"
        total = r["uploads"] + r["processes"] + r["files"]
        print(
            f"| `df.bgcut.process`, {how} | {r['rpm']:g}/min | {r['seconds']:.1f} s | "
            f"{total} ({r['uploads']} / {r['processes']} / {r['files']}) | "
            f"{r['achieved']:.0f} | {r['achieved'] / r['rpm']:.0%} | "
            f"{r['client_429']} / {r['server_429']} | {r['failed']} | {r['peak']} | "
            f"{loop / r['seconds']:.1f}x |"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="default 64 (200 simulated)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    parser.add_argument("--workers", type=int, default=None, help="default: the batch default")
    parser.add_argument("--quality", default="low", choices=("low", "medium", "high"))
    parser.add_argument("--size", type=int, nargs=2, default=(160, 120), metavar=("W", "H"))
    parser.add_argument("--simulate", action="store_true", help="against the service simulator")
    parser.add_argument("--plans", default="120,500", help="simulated plans, requests/min")
    parser.add_argument("--process-seconds", default="1-3", help="simulated processing, s")
    parser.add_argument("--loop-images", type=int, help="time the loop on fewer images")
    parser.add_argument("--learn", action="store_true", help="also run without a configured plan")
    args = parser.parse_args()
    if args.simulate:
        return simulate(args)
    args.images = args.images or 64

    import pandas as pd

    import bgcut_nb  # noqa: F401 - registers df.bgcut
    from bgcut_nb.backends.local import LocalBackend
    from bgcut_nb.backends.remote import RemoteBackend
    from bgcut_nb.testing.faults import FaultSpec
    from bgcut_nb.testing.server import ServerThread

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
