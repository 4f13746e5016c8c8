"""A stand-in for the real service, for benchmarks and pipeline tests: no segmentation work.

:class:`SimulatedBackend` answers like the service without using this machine's CPU: an upload
keeps the bytes and reads the image size from the header; a process call *sleeps* for a time
drawn from ``process_seconds`` (seeded, so runs repeat) and returns real, small encoded images
per variant (a flat disc on the variant's background, in its format, within its
``max_resolution``, autocropped when asked; at most :data:`SIM_MAX_PIXELS`).

:func:`install` puts the plan in front of a server app: ``plan_rpm`` requests per minute per key
(a token bucket refilling at ``plan_rpm / 60`` per second, ``plan_burst`` deep) answered with 429
and ``Retry-After`` beyond it, plus ``latency`` seconds added to every request. Only
``upload-image`` and ``process-image`` count against the plan, as on the real service, whose
output files come from a CDN. Refused requests are counted in the app's stats as
``rate_limited`` (accepted ones as ``upload``/``process``, as always).

``bgcut-nb serve --simulate`` and ``ServerThread(simulate=SimulatorSpec(...))`` use both.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..contract.backend import Backend, ImageInput, ProcessResult, UploadResult, read_image_input
from ..contract.errors import AuthenticationError, InvalidImageError, NotFoundError
from ..contract.formats import sniff_format
from ..contract.variants import Variant, parse_variants
from ..contract.wire import PROCESS_PATH, UPLOAD_LIFETIME, UPLOAD_PATH
from ..engine.imaging import DEFAULT_MAX_PIXELS
from ..engine.matting import Cutout
from ..engine.render import fit_within, render_variant
from ..server.ratelimit import TokenBucketLimiter

__all__ = ["SimulatorSpec", "SimulatedBackend", "install", "parse_seconds"]

#: Largest output the simulator renders (it stays cheap; the real service renders full size).
SIM_MAX_PIXELS = 1_000_000
_ORIENTATION = 0x0112


def parse_seconds(text: str | float | tuple[float, float]) -> tuple[float, float]:
    """``"1-3"`` -> ``(1.0, 3.0)``, ``"2"`` or ``2`` -> ``(2.0, 2.0)``."""
    if isinstance(text, tuple):
        low, high = (float(v) for v in text)
    elif isinstance(text, (int, float)):
        low = high = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9.]+)\s*(?:-\s*([0-9.]+)\s*)?", str(text))
        if not match:
            raise ValueError(f"expected seconds as 'LOW-HIGH' or 'S', got {text!r}")
        low = float(match.group(1))
        high = float(match.group(2)) if match.group(2) else low
    if not 0 <= low <= high:
        raise ValueError(f"processing seconds must satisfy 0 <= low <= high, got {text!r}")
    return low, high


@dataclass(frozen=True)
class SimulatorSpec:
    """How the simulated service behaves.

    ``process_seconds``: a processing call takes a uniformly drawn time in ``(low, high)``;
    ``latency``: seconds added to every request; ``plan_rpm``: upload + process requests per
    minute per key (0: unlimited), ``plan_burst`` deep (default: one second's worth, at least
    1); ``seed``: the random draws (``None``: not reproducible).
    """

    process_seconds: tuple[float, float] = (1.0, 3.0)
    latency: float = 0.0
    plan_rpm: float = 0.0
    plan_burst: int | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "process_seconds", parse_seconds(self.process_seconds))
        if self.latency < 0 or self.plan_rpm < 0:
            raise ValueError("latency and plan_rpm must not be negative")

    @property
    def burst(self) -> int:
        """Depth of the plan's bucket."""
        if self.plan_burst is not None:
            return max(1, int(self.plan_burst))
        return max(1, math.ceil(self.plan_rpm / 60.0))


class SimulatedBackend(Backend):
    """The :class:`Backend` contract with sleeps instead of segmentation (see the module doc).

    ``calls`` counts uploads and process calls; ``peak_in_flight`` is the most process calls
    that were sleeping at once; ``drawn`` holds the last 1000 processing times drawn.
    """

    def __init__(
        self, spec: SimulatorSpec = SimulatorSpec(), *, upload_ttl: float = UPLOAD_LIFETIME
    ) -> None:
        self.spec = spec
        self.upload_ttl = float(upload_ttl)
        self._random = random.Random(spec.seed)
        self._lock = threading.Lock()
        # unique_filename -> (uploaded at, width, height, colour, input format)
        self._uploads: dict[str, tuple[float, int, int, str, str]] = {}
        self._files: dict[str, tuple[float, bytes]] = {}
        self._in_flight = 0
        self.peak_in_flight = 0
        self.calls: Counter[str] = Counter()
        self.drawn: deque[float] = deque(maxlen=1000)
        self._last_sweep = time.monotonic()

    @property
    def identity(self) -> str:
        return f"simulator:{id(self):x}"

    def __repr__(self) -> str:
        return f"SimulatedBackend({self.spec})"

    def upload_image(self, image: ImageInput) -> UploadResult:
        data, _ = read_image_input(image)
        kind = sniff_format(data)
        if kind is None:
            raise InvalidImageError()
        try:
            with Image.open(io.BytesIO(data)) as img:  # reads the header only
                width, height = img.size
                if img.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):
                    width, height = height, width
        except (UnidentifiedImageError, OSError, ValueError):
            raise InvalidImageError() from None
        if width * height > DEFAULT_MAX_PIXELS:
            raise InvalidImageError()
        name = str(uuid.uuid4())
        colour = hashlib.sha256(data).hexdigest()[:6]
        with self._lock:
            self.calls["upload"] += 1
            self._uploads[name] = (time.monotonic(), width, height, colour, kind)
            self._files[f"{name}/input.{kind}"] = (time.monotonic(), data)
        self._sweep()
        return UploadResult(name)

    def process_image(
        self, unique_filename: str, variants: Iterable[Variant | Mapping[str, Any]]
    ) -> ProcessResult:
        parsed = parse_variants(variants)
        with self._lock:
            upload = self._uploads.get(unique_filename)
            if upload is None or time.monotonic() - upload[0] > self.upload_ttl:
                raise NotFoundError()
            low, high = self.spec.process_seconds
            seconds = self._random.uniform(low, high)
            self.drawn.append(seconds)
            self.calls["process"] += 1
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            time.sleep(seconds)  # the service works; this machine does not
        finally:
            with self._lock:
                self._in_flight -= 1
        _, width, height, colour, kind = upload
        urls = {}
        for variant in parsed:
            body = _render(width, height, colour, variant)
            digest = hashlib.sha256(variant.cache_key().encode()).hexdigest()[:12]
            path = f"{unique_filename}/{digest}/{variant.variant_name}.{variant.extension}"
            with self._lock:
                self._files[path] = (time.monotonic(), body)
            urls[variant.variant_name] = f"sim://{path}"
        return ProcessResult(unique_filename, f"sim://{unique_filename}/input.{kind}", urls)

    def iter_fetch(self, url: str) -> Iterator[bytes]:
        parsed = urlparse(url)
        with self._lock:
            entry = self._files.get(parsed.netloc + parsed.path)
        if parsed.scheme != "sim" or entry is None:
            raise NotFoundError("Output not found or has expired.")
        return iter([entry[1]])

    def _sweep(self, every: float = 60.0) -> None:
        now = time.monotonic()
        if now - self._last_sweep < every:
            return
        with self._lock:
            self._last_sweep = now
            old = now - self.upload_ttl
            self._uploads = {k: v for k, v in self._uploads.items() if v[0] >= old}
            self._files = {k: v for k, v in self._files.items() if v[0] >= old}


def _render(width: int, height: int, colour: str, variant: Variant) -> bytes:
    """A real image in the variant's format: a flat disc (the 'subject') on transparency."""
    w, h = fit_within(width, height, min(variant.max_resolution, SIM_MAX_PIXELS))
    yy, xx = np.ogrid[0:h, 0:w]
    inside = ((xx - w / 2) / (0.3 * w)) ** 2 + ((yy - h / 2) / (0.3 * h)) ** 2 <= 1.0
    alpha = inside.astype(np.float32)
    rgb = np.array([int(colour[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.uint8)
    foreground = np.broadcast_to(rgb, (h, w, 3))
    return render_variant(Cutout(alpha, foreground), variant)


class _Plan:
    """ASGI middleware: added latency on every request, the plan's per-minute limit on the
    paid endpoints (429 + ``Retry-After``), and a thread pool big enough for sleeping calls."""

    def __init__(self, app: Any, *, spec: SimulatorSpec, service: Any, stats: Counter) -> None:
        self.app = app
        self.spec = spec
        self.service = service
        self.stats = stats
        rate = spec.plan_rpm / 60.0
        self.limiter = TokenBucketLimiter(rate, spec.burst) if rate > 0 else None
        self._threads_raised = False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._threads_raised:
            import anyio.to_thread

            limiter = anyio.to_thread.current_default_thread_limiter()
            limiter.total_tokens = max(limiter.total_tokens, 256)
            self._threads_raised = True
        if self.spec.latency > 0:
            await asyncio.sleep(self.spec.latency)
        key = self._key_of(scope) if self.limiter is not None else None
        if key is not None and scope.get("path") in (UPLOAD_PATH, PROCESS_PATH):
            wait = self.limiter.acquire(key)
            if wait > 0:
                self.stats["rate_limited"] += 1
                await _too_many(send, max(1, math.ceil(wait)), self.spec.plan_rpm)
                return
        await self.app(scope, receive, send)

    def _key_of(self, scope: dict) -> str | None:
        """The key hash the plan is counted against; ``None`` for a bad key (the app answers
        401 without spending anyone's plan)."""
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1")
        try:
            return self.service.authenticate(header)
        except AuthenticationError:
            return None


async def _too_many(send: Any, retry_after: int, rpm: float) -> None:
    body = (
        f'{{"detail": "Rate limit exceeded: the plan allows {rpm:g} requests per minute; '
        f'retry after {retry_after} s"}}'
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install(app: Any, spec: SimulatorSpec) -> Any:
    """Put the plan (rate limit per minute, added latency) in front of a :func:`create_app` app."""
    app.add_middleware(_Plan, spec=spec, service=app.state.service, stats=app.state.stats)
    return app


#: Engine-pool threads of a simulated server: its calls sleep instead of using our CPU, so the
#: pool is sized like the service's own fleet, not like this machine's cores.
SIMULATED_WORKERS = 64
