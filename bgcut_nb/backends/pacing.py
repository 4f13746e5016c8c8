"""Client-side pacing of paid API calls: send at the plan's pace, learn it from 429 answers.

One of three limiters, each with its own job:

* this module, :class:`Pacer`: **how often** one client sends ``upload-image`` and
  ``process-image`` (requests per minute, the plan's limit), shared by every thread of one
  :class:`~bgcut_nb.backends.remote.RemoteBackend`;
* the batch's adaptive concurrency (``AdaptiveLimit``, next to the batch runner): **how many**
  calls a batch keeps in flight at once, grown while latency stays flat, halved on a 503;
* :mod:`bgcut_nb.server.ratelimit`: the **server's** per-key token bucket, which answers the 429s
  this module learns from.

:class:`Pacer` is thread-safe:

* With a configured plan (``requests_per_minute``, or ``BGCUT_REQUESTS_PER_MINUTE``) requests
  leave one every ``60 / requests_per_minute`` seconds (plus a burst of ``burst`` at once), in the
  order they asked, so a batch runs at the plan's limit without provoking 429s.
* Without one it sends freely until the first 429. Then it waits out ``Retry-After`` (every
  thread: one pause for all) and paces at the rate the service accepted over the last minute
  (time spent paused left out), 2% below it. 429s that arrive while a pause is on answer
  requests sent before it and lower the pace only once.
* What a 429 teaches depends on whether the pace was holding requests back when it came. If it
  was, the service refused the pace itself: the pace becomes 2% under what was accepted, and
  after each minute without a 429 it tries 5% faster (never faster than a configured plan). If
  it was not (the batch sent less than the pace allows, or had no pace yet), the accepted rate
  is only what the batch asked for, so a lone 429 says little about the plan: a known pace
  steps 2% down, and a pace learnt that way tries 25% faster after every 5 quiet seconds while
  it holds requests back and is dropped (back to sending freely) once it holds nothing back.
  More 429s during the pause one started (requests in flight refused together) do say it: the
  pace is then the service's, as if it had held requests back. A service that answers 429 at
  random (a full queue, a proxy) thus costs pauses, not a pace that ratchets down to the
  batch's slowest moment.

Only requests that count against the plan go through it (``upload-image`` and
``process-image``); output files are plain downloads (a CDN on the real service).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Pacer"]

#: Seconds of accepted requests the learner looks back over.
WINDOW = 60.0
#: Rate kept at each further 429, and the probe factor after a quiet minute.
BACKOFF = 0.98
PROBE = 1.05
#: A pace learnt while it held nothing back: the quiet seconds between its probes, each faster by
#: ``FAST_PROBE``; also how recently the pace must have held a request back for a 429 to count
#: as a refusal of the pace itself.
FAST_WINDOW = 5.0
FAST_PROBE = 1.25
#: Pause after a 429 that had no usable ``Retry-After``.
DEFAULT_PAUSE = 1.0


class Pacer:
    """Paces requests at ``requests_per_minute`` (``None``: unknown, learnt from 429s)."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive (or None to learn it)")
        self.configured = requests_per_minute
        self.burst = max(1, int(burst))
        self._rate = requests_per_minute / 60.0 if requests_per_minute else None
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat = clock()  # theoretical arrival time of the next request (GCRA)
        self._pause_until = 0.0
        self._last_429 = clock()
        self._last_held = -float("inf")  # when the pace last made a request wait
        #: Whether the pace is known to be the service's (configured, or refused while holding
        #: requests back) rather than learnt from a 429 that came when it held nothing back.
        self._firm = requests_per_minute is not None
        self._accepted: deque[float] = deque()
        self._pauses: deque[tuple[float, float]] = deque()  # (start, end) within the window
        self.rate_limited = 0
        self.waited = 0.0

    @property
    def requests_per_minute(self) -> float | None:
        """The pace in use now: configured, learnt, or ``None`` (not limited yet)."""
        rate = self._rate
        return rate * 60.0 if rate else None

    def __repr__(self) -> str:
        rpm = self.requests_per_minute
        pace = f"{rpm:.1f}/min" if rpm else "unlimited"
        return f"Pacer({pace}, configured={self.configured}, 429s={self.rate_limited})"

    def acquire(self) -> float:
        """Block until one more request may leave; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._probe(now)
            start = max(now, self._pause_until)
            if self._rate:
                interval = 1.0 / self._rate
                paced = self._tat - (self.burst - 1) * interval
                if paced > start:
                    self._last_held = now
                    start = paced
                self._tat = max(self._tat, start) + interval
        waited = 0.0
        if start > now:
            self._sleep(start - now)
            waited = start - now
        # a 429 that arrived while this request waited pauses it as well
        pause = self._pause_until - self._clock()
        if pause > 0:
            self._sleep(pause)
            waited += pause
        with self._lock:
            self.waited += waited
        return waited

    def observe(self, status: int, retry_after: float | None = None) -> None:
        """Record the answer to a paced request: a 429 pauses and slows, anything else counts
        as accepted."""
        with self._lock:
            now = self._clock()
            if status != 429:
                self._accepted.append(now)
                while self._accepted and self._accepted[0] < now - WINDOW:
                    self._accepted.popleft()
                return
            self.rate_limited += 1
            self._last_429 = now
            pause = retry_after if retry_after is not None and retry_after >= 0 else DEFAULT_PAUSE
            pausing = now < self._pause_until  # sent before the last 429 was known
            self._pause_until = max(self._pause_until, now + pause)
            self._pauses.append((now, self._pause_until))
            if pausing and self._rate is not None:
                # several refusals at once: the service is refusing the rate, not one request
                self._firm = True
                return
            while self._accepted and self._accepted[0] < now - WINDOW:
                self._accepted.popleft()
            held = self._rate is not None and now - self._last_held <= FAST_WINDOW
            accepted = self._rate
            if (held or accepted is None) and len(self._accepted) >= 2:
                span = max(now - self._accepted[0] - self._paused_since(self._accepted[0]), 1.0)
                seen = len(self._accepted) / span
                accepted = seen if accepted is None else min(accepted, seen)
            if accepted is not None:
                self._firm = self._firm or held
                self._rate = accepted * BACKOFF
                self._tat = max(self._tat, self._pause_until)

    def _paused_since(self, start: float) -> float:
        """Seconds of pause between ``start`` and the pause just begun (not counted)."""
        while self._pauses and self._pauses[0][1] < start:
            self._pauses.popleft()
        last = self._pauses[-1][0]
        total, covered = 0.0, start
        for begin, end in list(self._pauses)[:-1]:
            begin, end = max(begin, covered), min(end, last)
            if end > begin:
                total += end - begin
                covered = end
        return total

    def _probe(self, now: float) -> None:
        """After a quiet while, try faster: a firm pace 5% after a minute (up to the configured
        plan), a learnt one 25% after 5 s while it holds requests back, else drop it."""
        if self._rate is None:
            return
        if self._firm:
            if now - self._last_429 >= WINDOW:
                self._last_429 = now
                ceiling = self.configured / 60.0 if self.configured else float("inf")
                self._rate = min(ceiling, self._rate * PROBE)
        elif now - self._last_429 >= FAST_WINDOW:
            holding = now - self._last_held <= FAST_WINDOW
            self._last_429 = now
            self._rate = self._rate * FAST_PROBE if holding else None
