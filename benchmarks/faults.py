"""Fault drill: a batch through RemoteBackend while a proxy injects 429s, 503s, resets, latency.

    python benchmarks/faults.py [--images 50] [--rate 0.2] [--workers 4] [--seed 7]
    python benchmarks/faults.py --reruns [--images 20] [--rate 0.5] [--seed 7]

Starts the project's server on 127.0.0.1 over the local engine with a FaultProxy in front,
uploads and processes every image (two variants each), downloads every output and checks it
on real pixels (format, size, alpha, the subject's own colour), then checks the server's SQLite
ledger: exactly one charge per variant set, and the balance down by exactly that. Prints the
faults injected, requests the server handled, charges, failures and the wall time; exits 1 if
any output is wrong or any credit was charged twice.

With ``--reruns``, the images go through the notebook batch (``run_batch`` with a reuse cache)
instead, re-run until every row is done, as a user would after a failed run: it prints the
runs needed, the credits charged and the outputs delivered across all runs (they must match:
a lost answer is replayed on the re-run, never charged again).
"""

from __future__ import annotations

import argparse
import colorsys
import io
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bgcut_nb.backends.remote import RemoteBackend, RetryPolicy  # noqa: E402
from bgcut_nb.batch.reuse import ReuseCache  # noqa: E402
from bgcut_nb.batch.runner import run_batch  # noqa: E402
from bgcut_nb.contract.pricing import DEFAULT_COSTS  # noqa: E402
from bgcut_nb.testing.faults import FaultSpec  # noqa: E402
from bgcut_nb.testing.server import ServerThread  # noqa: E402

KEY = "fault-drill-key"
VARIANTS = [
    {"variant_name": "cutout", "format": "png", "quality": "low", "max_resolution": 15_000},
    {"variant_name": "white", "format": "jpg", "quality": "low", "background_color": "#ffffff"},
]


def ball_photo(index: int, width: int = 160, height: int = 120) -> tuple[bytes, tuple[int, ...]]:
    """A saturated ball of a colour of its own on a pale backdrop; returns (JPEG, colour)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.137) % 1.0, 0.85, 0.85)
    colour = (int(r * 255), int(g * 255), int(b * 255))
    y, x = np.mgrid[0:height, 0:width]
    ball = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) * 0.33) ** 2
    pixels = np.where(ball[..., None], np.array(colour), np.array((232, 234, 238)))
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buf, "JPEG", quality=95)
    return buf.getvalue(), colour


@dataclass
class DrillReport:
    images: int
    wall_s: float
    faults: Counter
    server_requests: Counter
    charges: int
    distinct_charges: int
    credits_charged: float
    credits_expected: float
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.failures
            and self.charges == self.distinct_charges == self.images
            and abs(self.credits_charged - self.credits_expected) < 1e-9
        )

    def table(self) -> str:
        rows = [
            ("images", self.images),
            ("wall time, s", f"{self.wall_s:.1f}"),
            *((f"injected {k}", v) for k, v in sorted(self.faults.items())),
            *((f"server handled {k}", v) for k, v in sorted(self.server_requests.items())),
            ("charges journalled", self.charges),
            ("distinct variant sets charged", self.distinct_charges),
            ("credits charged / expected", f"{self.credits_charged:g} / {self.credits_expected:g}"),
            ("wrong or failed outputs", len(self.failures)),
            ("result", "PASS" if self.ok else "FAIL"),
        ]
        return _aligned(rows)


def _aligned(rows: list[tuple[object, object]]) -> str:
    """``name  value`` lines, the values in one column."""
    width = max(len(str(k)) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _check(
    backend: RemoteBackend, index: int, width: int, height: int, photo: int | None = None
) -> str | None:
    """Run image ``index`` (ball ``photo``, default the same number) end to end; returns what
    is wrong, or None."""
    data, colour = ball_photo(index if photo is None else photo, width, height)
    try:
        uploaded = backend.upload_image(data)
        result = backend.process_image(uploaded.unique_filename, VARIANTS)
        cutout = Image.open(io.BytesIO(backend.fetch(result.output_urls["cutout"])))
        white = Image.open(io.BytesIO(backend.fetch(result.output_urls["white"])))
    except Exception as exc:  # the drill reports every failure instead of stopping
        return f"image {index}: {type(exc).__name__}: {exc}"
    if cutout.format != "PNG" or cutout.mode != "RGBA":
        return f"image {index}: cutout is {cutout.format}/{cutout.mode}"
    if cutout.width * cutout.height > 15_000:
        return f"image {index}: cutout {cutout.size} exceeds 15,000 px"
    if white.format != "JPEG" or white.size != (width, height):
        return f"image {index}: white is {white.format} {white.size}"
    rgba = np.asarray(cutout, dtype=np.int16)
    centre = rgba[cutout.height // 2, cutout.width // 2]
    if centre[3] < 200 or np.abs(centre[:3] - colour).max() > 40:
        return f"image {index}: cutout centre {tuple(centre)} is not the ball {colour}"
    if rgba[1, 1, 3] > 60:
        return f"image {index}: cutout corner is not transparent (alpha {rgba[1, 1, 3]})"
    rgb = np.asarray(white, dtype=np.int16)
    if (rgb[1, 1] < 240).any() or np.abs(rgb[height // 2, width // 2] - colour).max() > 40:
        return f"image {index}: white background or subject colour is wrong"
    return None


def _drill_server(credits: float, storage: str | Path, backend, spec: FaultSpec) -> ServerThread:
    """The server under drill (no rate limit of its own: the proxy brings the weather)."""
    return ServerThread({KEY: credits}, storage, backend=backend, faults=spec, rate_limit=0)


def run_drill(
    images: int = 50,
    *,
    rate: float = 0.2,
    workers: int = 4,
    seed: int | None = 7,
    retry_after: int = 1,
    latency: float = 0.1,
    size: tuple[int, int] = (160, 120),
    backend=None,
    storage_dir: str | Path | None = None,
    distinct: int | None = None,
) -> DrillReport:
    """Run the drill; ``backend`` is the engine (a LocalBackend) the server uses. With
    ``distinct``, the images repeat after that many balls (each still uploaded and processed
    on its own: only the engine's model pass is shared between equal photos)."""
    cost = DEFAULT_COSTS.process_cost(VARIANTS)
    start_credits = images * cost + 10
    spec = FaultSpec(rate=rate, retry_after=retry_after, latency=latency, seed=seed)
    policy = RetryPolicy(retries=8, backoff=0.05, backoff_max=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        with _drill_server(
            start_credits, storage_dir or Path(tmp) / "server", backend, spec
        ) as server:
            client = RemoteBackend(KEY, server.base_url, retry=policy)
            started = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                outcomes = list(
                    pool.map(
                        lambda i: _check(client, i, *size, photo=i % distinct if distinct else i),
                        range(images),
                    )
                )
            wall = time.perf_counter() - started
            client.close()
            charges = server.app.state.service.ledger.charges(
                server.app.state.service.key_hash(KEY)
            )
            balance = server.credits(KEY)
            faults = Counter({k: v for k, v in server.proxy.stats.items() if k != "forwarded"})
            return DrillReport(
                images=images,
                wall_s=wall,
                faults=faults,
                server_requests=Counter(server.stats),
                charges=len(charges),
                distinct_charges=len({request for request, _ in charges}),
                credits_charged=start_credits - balance,
                credits_expected=images * cost,
                failures=[o for o in outcomes if o is not None],
            )


@dataclass
class RerunReport:
    """A batch at injected faults, re-run until every row is done."""

    images: int
    runs: int
    rows_done: int
    outputs_delivered: int
    credits_charged: float
    credit_per_output: float
    faults: Counter
    wall_s: float

    @property
    def ok(self) -> bool:
        expected = self.outputs_delivered * self.credit_per_output
        return self.rows_done == self.images and abs(self.credits_charged - expected) < 1e-9

    def table(self) -> str:
        rows = [
            ("images", self.images),
            ("runs until every row was done", self.runs),
            ("rows done", self.rows_done),
            *((f"injected {k}", v) for k, v in sorted(self.faults.items())),
            ("outputs delivered", self.outputs_delivered),
            ("credits charged", f"{self.credits_charged:g}"),
            (
                "credits per output delivered",
                f"{self.credits_charged / max(1, self.outputs_delivered):g}",
            ),
            ("wall time, s", f"{self.wall_s:.1f}"),
            ("result", "PASS" if self.ok else "FAIL"),
        ]
        return _aligned(rows)


def run_rerun_drill(
    images: int = 20,
    *,
    rate: float = 0.5,
    seed: int | None = 7,
    workers: int = 4,
    max_runs: int = 12,
    retries: int = 1,
    size: tuple[int, int] = (96, 72),
    backend=None,
    storage_dir: str | Path | None = None,
) -> RerunReport:
    """Batch ``images`` photos through a FaultProxy at ``rate``, re-running the batch (same
    cache, same output folder) until every row is done or ``max_runs`` runs; counts the
    credits the server's ledger took against the outputs delivered. Few ``retries`` per
    request, so that rows fail (answers lost included) and re-runs have work to do."""
    cost = DEFAULT_COSTS.process_cost(VARIANTS)
    start_credits = images * cost * 4 + 10
    spec = FaultSpec(rate=rate, retry_after=1, latency=0.05, seed=seed)
    policy = RetryPolicy(retries=retries, backoff=0.02, backoff_max=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        photos = [(i, ball_photo(i, *size)[0]) for i in range(images)]
        with _drill_server(
            start_credits, storage_dir or Path(tmp) / "server", backend, spec
        ) as server:
            client = RemoteBackend(KEY, server.base_url, retry=policy)
            cache = ReuseCache(Path(tmp) / "cache")
            started = time.perf_counter()
            done: set[int] = set()
            runs = 0
            while len(done) < images and runs < max_runs:
                runs += 1
                result = run_batch(
                    photos,
                    VARIANTS,
                    backend=client,
                    out_dir=Path(tmp) / "out",
                    cache=cache,
                    max_workers=workers,
                    progress=False,
                )
                done |= {i for i, row in enumerate(result.rows) if row.status in ("done", "cached")}
            wall = time.perf_counter() - started
            client.close()
            cache.close()
            outputs = sum(1 for p in (Path(tmp) / "out").rglob("*.*g") if p.is_file())
            faults = Counter({k: v for k, v in server.proxy.stats.items() if k != "forwarded"})
            return RerunReport(
                images=images,
                runs=runs,
                rows_done=len(done),
                outputs_delivered=outputs,
                credits_charged=start_credits - server.credits(KEY),
                credit_per_output=cost / len(VARIANTS),
                faults=faults,
                wall_s=wall,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.2, help="share of requests faulted")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument(
        "--reruns", action="store_true", help="batch with re-runs: credits vs outputs delivered"
    )
    args = parser.parse_args()
    if args.reruns:
        rerun = run_rerun_drill(args.images, rate=args.rate, seed=args.seed, workers=args.workers)
        print(rerun.table())
        return 0 if rerun.ok else 1
    report = run_drill(
        args.images,
        rate=args.rate,
        workers=args.workers,
        seed=args.seed,
        retry_after=args.retry_after,
    )
    print(report.table())
    for failure in report.failures:
        print("  " + failure)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
