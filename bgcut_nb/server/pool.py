"""The server's engine pool: a fixed number of worker threads and a bounded queue.

Every ``process-image`` call runs its engine work here. A call is admitted only while fewer than
``workers + queue`` calls are admitted; beyond that it is refused at once (the app answers 429
with ``Retry-After``), so a burst of calls never piles up threads, memory or sockets. An admitted
call awaits its work without holding a thread (the event loop waits on the worker's future).
The app's lifespan starts the pool and closes it (it also starts on first use).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ..contract.errors import ServerBusyError
from ..core.cpus import available_cpus

__all__ = ["EnginePool", "Slot", "ServerBusyError", "default_workers"]

T = TypeVar("T")


def default_workers() -> int:
    """One engine worker per available core."""
    return available_cpus()


class EnginePool:
    """``workers`` threads run admitted calls; at most ``queue`` more wait for one."""

    def __init__(self, workers: int | None = None, queue: int | None = None) -> None:
        self.workers = workers if workers and workers > 0 else default_workers()
        self.queue = queue if queue is not None and queue >= 0 else 2 * self.workers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._admitted = 0
        self._seconds: deque[float] = deque(maxlen=32)
        self.refused = 0

    @property
    def capacity(self) -> int:
        """Calls admitted at most at once (running plus queued)."""
        return self.workers + self.queue

    @property
    def admitted(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue's work spread over the workers."""
        typical = sorted(self._seconds)[len(self._seconds) // 2] if self._seconds else 1.0
        return max(1, min(60, math.ceil(typical * max(1, self._admitted) / self.workers)))

    def start(self) -> None:
        """Open the workers (again after :meth:`close`); their threads start on demand."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="bgcut-engine")

    @contextlib.contextmanager
    def slot(self) -> Iterator[Slot]:
        """Admit one call (else :class:`ServerBusyError`) for the ``with`` block and, if it
        started work with :meth:`Slot.run`, until that work is done."""
        with self._lock:
            if self._admitted >= self.capacity:
                self.refused += 1
                wait = self.retry_after()
                raise ServerBusyError(
                    f"Server busy: {self._admitted} processing calls are running or queued; "
                    f"retry after {wait} s",
                    retry_after=wait,
                )
            self._admitted += 1
        slot = Slot(self)
        try:
            yield slot
        finally:
            if slot.work is None:
                self._release()
            else:  # released by the work itself (at once if it is done)
                slot.work.add_done_callback(self._release)

    def _release(self, _work: object = None) -> None:
        with self._lock:
            self._admitted -= 1

    def _submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        def timed() -> T:
            started = time.monotonic()
            try:
                return fn(*args)
            finally:
                self._seconds.append(time.monotonic() - started)
                _return_freed_memory()

        self.start()
        assert self._executor is not None
        return self._executor.submit(timed)

    def close(self) -> None:
        """Stop the workers once the admitted calls are done."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


class Slot:
    """One admitted call of an :class:`EnginePool`; runs its engine work once."""

    def __init__(self, pool: EnginePool) -> None:
        self._pool = pool
        self.work: Future | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on a worker thread and await its result. The work is not
        abandoned if the awaiting task is cancelled: it finishes, and keeps the slot till then."""
        if self.work is not None:
            raise RuntimeError("a slot runs one piece of work")
        self.work = self._pool._submit(fn, *args)
        return await asyncio.shield(asyncio.wrap_future(self.work))


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


_MALLOC_TRIM = _glibc_malloc_trim()


def _return_freed_memory() -> None:
    """Give glibc's freed heap pages back to the OS after a call.

    A large image's buffers (Pillow, numpy) freed in a worker thread stay in that thread's
    malloc arena otherwise: benchmarks/memory.py measured 1.04 GB still resident after six
    64 MP calls, 0.59 GB with this.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
