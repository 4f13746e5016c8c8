"""How many requests a batch keeps in flight: adaptive (AIMD) over HTTP, fixed in-process.

:class:`AdaptiveLimit` bounds the ``upload-image`` and ``process-image`` calls a batch has
in flight. After every round (as many finished calls as the limit), it compares each kind of
call's median latency with the lowest median seen: while latency stays flat (at most
``tolerance`` times that) and the service sent no 503 (``Backend.pressure``), the limit grows
by one; a 503 ("overloaded": too many at once) halves it. A 429 ("rate limited": too many per
minute) is the client's rate limiter's to handle (it pauses every thread for ``Retry-After`` and
then paces at the rate the service accepted): halving the concurrency as well would leave the
batch below the plan's pace once the limiter paces it. Waiting in the rate limiter counts as
latency, so the limit stops growing once the plan's pace is what holds the batch back.

:class:`GatedBackend` applies the limit to a backend's two paid calls and leaves downloads
outside it: a row's downloads overlap other rows' processing. :func:`plan` decides, for one
batch, the limit and how many threads to run.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..contract.backend import Backend

__all__ = ["AdaptiveLimit", "GatedBackend", "Plan", "plan"]


class AdaptiveLimit:
    """A semaphore whose size follows AIMD (see the module docstring)."""

    def __init__(
        self,
        initial: int,
        *,
        minimum: int = 1,
        maximum: int | None = None,
        adaptive: bool = True,
        pressure: Callable[[], int] = lambda: 0,
        tolerance: float = 1.5,
    ) -> None:
        self.limit = max(minimum, int(initial))
        self.minimum = minimum
        self.maximum = max(self.limit, maximum or self.limit)
        self.adaptive = adaptive
        self.tolerance = tolerance
        self.peak = self.limit
        self.decreases = 0
        self._pressure = pressure
        self._pushback = pressure()
        self._in_flight = 0
        self._round: dict[str, list[float]] = {}
        self._baseline: dict[str, float] = {}
        self._cond = threading.Condition()

    def acquire(self) -> None:
        """Wait for a free slot."""
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1

    def release(self, op: str, seconds: float) -> None:
        """Free a slot; ``seconds`` is how long the ``op`` call took (waits included)."""
        with self._cond:
            self._in_flight -= 1
            if self.adaptive:
                self._observe(op, seconds)
            self._cond.notify_all()

    def _observe(self, op: str, seconds: float) -> None:
        pushback = self._pressure()
        if pushback > self._pushback:
            self._pushback = pushback
            self.limit = max(self.minimum, self.limit // 2)
            self.decreases += 1
            self._round.clear()
            return
        self._round.setdefault(op, []).append(seconds)
        if sum(len(v) for v in self._round.values()) < self.limit:
            return
        flat = True
        for kind, samples in self._round.items():
            median = statistics.median(samples)
            best = min(self._baseline.get(kind, median), median)
            self._baseline[kind] = best
            if len(samples) >= 3 and median > self.tolerance * max(best, 1e-3):
                flat = False
        self._round.clear()
        if flat and self.limit < self.maximum:
            self.limit += 1
            self.peak = max(self.peak, self.limit)


class GatedBackend:
    """``backend`` with its paid calls (upload, process) inside an :class:`AdaptiveLimit`.

    Everything else (identity, downloads, ...) is the backend's own. A call that got its slot
    after ``stop`` was set raises ``stopped()`` instead of being sent.
    """

    def __init__(
        self,
        backend: Backend,
        gate: AdaptiveLimit,
        stop: threading.Event,
        stopped: Callable[[], BaseException],
    ) -> None:
        self._backend = backend
        self._gate = gate
        self._stop = stop
        self._stopped = stopped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def upload_image(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("upload", self._backend.upload_image, args, kwargs)

    def process_image(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("process", self._backend.process_image, args, kwargs)

    def _call(self, op: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        self._gate.acquire()
        started = time.perf_counter()
        try:
            if self._stop.is_set():
                raise self._stopped()
            return fn(*args, **kwargs)
        finally:
            self._gate.release(op, time.perf_counter() - started)


@dataclass(frozen=True)
class Plan:
    """One batch's concurrency: the in-flight limit and the threads that run rows."""

    gate: AdaptiveLimit | None
    threads: int


def _overloaded(backend: Backend) -> Callable[[], int]:
    return lambda: backend.pressure().get("overloaded", 0)


def plan(backend: Backend, max_workers: int | None) -> Plan:
    """In-process backends: ``max_workers`` (or the default) threads, no gate, as always.
    Over HTTP, ``max_workers=N`` keeps N rows at once, as in-process; ``None`` adapts from the
    backend's default (8) up to 4 times that, with extra threads so that downloads overlap
    processing. The connection pool is sized to the thread count."""
    workers = max_workers if max_workers is not None else backend.default_workers
    if workers < 1:
        raise ValueError("max_workers must be at least 1")
    if backend.is_local:
        return Plan(None, workers)
    if max_workers is not None:
        backend.reserve_connections(workers)
        return Plan(None, workers)
    gate = AdaptiveLimit(workers, maximum=max(32, 4 * workers), pressure=_overloaded(backend))
    threads = gate.maximum + workers
    backend.reserve_connections(threads)
    return Plan(gate, threads)
