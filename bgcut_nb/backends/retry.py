"""When a request to the v3 API is sent again: :class:`RetryPolicy`, a decision without I/O.

:meth:`RetryPolicy.decide` looks at one attempt's outcome (an HTTP status with its headers, or
the exception the transport raised) and answers :class:`Retry` (``after`` seconds) or
:class:`GiveUp`; :class:`~bgcut_nb.backends.remote.RemoteBackend` does the sending, sleeping
and error mapping. The rules:

* ``429``, ``502``, ``503`` and ``504`` answers are retried up to ``retries`` times with jittered
  exponential backoff (0.5 s doubling, capped at 8 s). A ``Retry-After`` header is honoured up to
  ``retry_after_max`` (60 s); a longer one gives up at once (the caller raises the mapped error,
  :class:`~bgcut_nb.contract.errors.RateLimitError` carrying ``retry_after`` for a 429).
* Connection failures that happened before the request was sent (refused, DNS, connect timeout)
  are retried the same way.
* Any other status (``400``/``401``/``402``/``404``/``413``...) is never retried.
* A failure *after* the request was sent (read timeout, connection reset, truncated answer) is
  ambiguous: the server may have done the work. Only what cannot be charged twice is repeated:
  ``upload-image`` is free (at worst an unused upload is left behind) and fetching an output URL
  is a plain GET, so both are; ``process-image`` (:data:`CHARGED_OPS`) costs credits and is not
  idempotent on the real service, so it is repeated only when the server deduplicates on the
  ``Idempotency-Key`` (it said so in an earlier answer: ``server_dedups``), unless
  ``retry_ambiguous_process`` says otherwise (``True``: always, ``False``: never).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

import requests
import urllib3.exceptions
from urllib3.util.retry import Retry as _Urllib3Retry

__all__ = [
    "CHARGED_OPS",
    "GiveUp",
    "Retry",
    "RetryPolicy",
    "request_was_sent",
    "retry_after_seconds",
]

#: Operations that cost credits: a repeat after the request went out could be charged twice.
CHARGED_OPS = frozenset({"process-image"})


@dataclass(frozen=True)
class Retry:
    """Send the request again after ``after`` seconds."""

    after: float


@dataclass(frozen=True)
class GiveUp:
    """Do not send it again: ``reason`` says why; ``sent`` whether the failed attempt may have
    reached the server (always true for an answer)."""

    reason: str
    sent: bool = True


def request_was_sent(exc: BaseException) -> bool:
    """Whether a transport failure may have happened after bytes of the request went out
    (false only for failures to connect: refused, DNS, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", None)
        # NewConnectionError (refused, DNS) subclasses ConnectTimeoutError in urllib3 2.
        return not isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
    return True


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The ``Retry-After`` header in seconds (either form: seconds or an HTTP date), else
    ``None`` (absent or unreadable)."""
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        # urllib3 parses both forms; lift its own cap so the policy decides.
        return _Urllib3Retry(retry_after_max=2**31).parse_retry_after(value)
    except urllib3.exceptions.InvalidHeader:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before repeating a request (see the module docstring)."""

    retries: int = 3
    backoff: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 60.0
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    #: Repeat a ``process-image`` whose request was sent: ``None`` when the server said it
    #: deduplicates on the Idempotency-Key, ``True`` always, ``False`` never.
    retry_ambiguous_process: bool | None = None

    def backoff_delay(self, attempt: int) -> float:
        """Jittered exponential delay before retry number ``attempt`` (0-based)."""
        delay = min(self.backoff_max, self.backoff * (2**attempt))
        return delay * random.uniform(0.5, 1.0)

    def may_repeat_sent(self, op: str, server_dedups: bool = False) -> bool:
        """Whether ``op`` may be sent again after an attempt that may have reached the server."""
        if op not in CHARGED_OPS:
            return True
        if self.retry_ambiguous_process is not None:
            return self.retry_ambiguous_process
        return server_dedups

    def decide(
        self,
        attempt: int,
        outcome: int | BaseException,
        headers: Mapping[str, str] | None = None,
        *,
        op: str = "fetch",
        server_dedups: bool = False,
    ) -> Retry | GiveUp:
        """What to do after attempt number ``attempt`` (0-based) of ``op`` ended in ``outcome``:
        an HTTP status (with the answer's ``headers``) or the transport's exception."""
        if isinstance(outcome, BaseException):
            return self._after_failure(attempt, request_was_sent(outcome), op, server_dedups)
        return self._after_answer(attempt, outcome, headers)

    def _after_failure(self, attempt: int, sent: bool, op: str, server_dedups: bool):
        if attempt >= self.retries:
            return GiveUp(f"no retries left after {attempt + 1} attempts", sent)
        if sent and not self.may_repeat_sent(op, server_dedups):
            return GiveUp(f"{op} was sent and a repeat could be charged twice", sent)
        return Retry(self.backoff_delay(attempt))

    def _after_answer(self, attempt: int, status: int, headers: Mapping[str, str] | None):
        if status not in self.statuses:
            return GiveUp(f"HTTP {status} is not retried")
        if attempt >= self.retries:
            return GiveUp(f"no retries left after {attempt + 1} attempts")
        retry_after = retry_after_seconds(headers)
        if retry_after is not None and retry_after > self.retry_after_max:
            return GiveUp(f"Retry-After {retry_after:g}s is over {self.retry_after_max:g}s")
        return Retry(retry_after if retry_after is not None else self.backoff_delay(attempt))
