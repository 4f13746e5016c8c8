"""Per-key token-bucket rate limiting for the server: the 429s it answers.

The client's side of the same limit is :mod:`bgcut_nb.backends.pacing` (pacing one client at the
plan's requests per minute, learnt from these 429s); how many calls a batch keeps in flight at
once is the batch's adaptive concurrency, a third and separate limit.
"""

from __future__ import annotations

import threading
import time

__all__ = ["TokenBucketLimiter"]


class TokenBucketLimiter:
    """``rate`` requests per second per key on average, bursts of up to ``burst``.

    ``rate <= 0`` disables limiting.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take a token for ``key``; returns 0 when allowed, else seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
