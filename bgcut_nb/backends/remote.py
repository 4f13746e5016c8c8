"""The BackgroundCut v3 API over HTTP: :class:`RemoteBackend`.

Talks to the real service (``https://api.backgroundcut.co``) or to the project's own server
(``bgcut-nb serve``) with one pooled :class:`requests.Session`.

Retry policy (:class:`RetryPolicy`):

* ``429``, ``502``, ``503`` and ``504`` answers are retried up to ``retries`` times with jittered
  exponential backoff (0.5 s doubling, capped at 8 s). A ``Retry-After`` header is honoured up to
  ``retry_after_max`` (60 s); a longer one is raised at once as the mapped error
  (:class:`~bgcut_nb.contract.errors.RateLimitError` carrying ``retry_after`` for a 429).
* Connection failures that happened before the request was sent (refused, DNS, connect timeout)
  are retried the same way.
* ``400``/``401``/``402``/``404``/``413`` are never retried.
* A failure *after* the request was sent (read timeout, connection reset, truncated answer) is
  ambiguous: the server may have done the work. ``upload-image`` is free, so it is repeated (at
  worst an unused upload is left behind); fetching an output URL is a plain GET and is repeated.
  ``process-image`` costs credits and is not idempotent on the real service, so it is **not**
  repeated: :class:`APIConnectionError` is raised with ``maybe_processed=True``. Every
  ``process-image`` call carries an ``Idempotency-Key`` header (the same on every attempt); a
  server that deduplicates on it says so with the ``Bgcut-Idempotency: process-image`` response
  header (the project's own server does), and only then is an ambiguous failure repeated, because
  the repeat is answered from the first call's result without a second charge. Override with
  ``retry_ambiguous_process=True/False``.

Idempotency-Key: the caller may pass one (the notebook batch passes a key it keeps in the reuse
cache until the answer is recorded); without one it is **derived** from the request
(:func:`~bgcut_nb.contract.wire.process_idempotency_key`: the API key's fingerprint, the
``unique_filename`` and the normalised variants in order), never random. So asking again for
the same variants of the same upload, on a retry or in a later run, is the same request: a
server that deduplicates answers it from the first call (fresh URLs, no second charge) as
long as the upload lives. A different upload of the same image, or other variants, is another
request and is charged.

Rate limit (:class:`~bgcut_nb.backends.throttle.RateLimiter`): ``upload-image`` and
``process-image`` are paced at the plan's ``requests_per_minute`` (argument, else
``BGCUT_REQUESTS_PER_MINUTE``); without one the pace is learnt from 429 answers and their
``Retry-After``. Output downloads are not paced. :meth:`RemoteBackend.pressure` counts the 429
and 503 answers seen, which a batch uses to adapt its concurrency.

The API key is held as :class:`~bgcut_nb.core.config.ApiKey`: it is sent only in the Authorization
header of API calls (never when fetching output URLs), and never appears in reprs, logs,
exception text or pickles. Errors raised here never chain to ``requests`` exceptions, whose
request objects hold the headers.
"""

from __future__ import annotations

import logging
import mimetypes
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.util.retry import Retry

from ..contract.backend import Backend, ImageInput, ProcessResult, UploadResult, read_image_input
from ..contract.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    BgcutError,
    error_for_status,
)
from ..contract.pricing import DEFAULT_COSTS, CostTable
from ..contract.variants import Variant, check_text, parse_variants
from ..contract.wire import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_SUPPORT_HEADER,
    PROCESS_PATH,
    UPLOAD_PATH,
    process_idempotency_key,
)
from ..core.config import (
    ApiKey,
    resolve_api_base,
    resolve_api_key,
    resolve_requests_per_minute,
)
from ..core.version import __version__
from .throttle import RateLimiter

__all__ = ["RemoteBackend", "RetryPolicy", "APIConnectionError", "IDEMPOTENCY_HEADER"]

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class APIConnectionError(BgcutError):
    """The API could not be reached, or the connection failed before a full answer came back.

    ``maybe_processed`` is true when the request had been sent, so the server may have done
    the work (and, for ``process-image``, charged for it).
    """

    def __init__(self, message: str, *, maybe_processed: bool = False) -> None:
        super().__init__(message)
        self.maybe_processed = maybe_processed

    def __reduce__(self):
        return (_rebuild_connection_error, (str(self), self.maybe_processed))


def _rebuild_connection_error(message: str, maybe_processed: bool) -> APIConnectionError:
    return APIConnectionError(message, maybe_processed=maybe_processed)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before repeating a request."""

    retries: int = 3
    backoff: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 60.0
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def backoff_delay(self, attempt: int) -> float:
        """Jittered exponential delay before retry number ``attempt`` (0-based)."""
        delay = min(self.backoff_max, self.backoff * (2**attempt))
        return delay * random.uniform(0.5, 1.0)


class _RedactedHeader(str):
    """A header value that goes on the wire as is but reprs as redacted (in dicts, in
    tracebacks' frame locals, in ``requests``' and ``urllib3``'s own frames)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'Bearer <redacted>'"


class _BearerAuth(AuthBase):
    """``Authorization: Bearer KEY`` added by requests when it prepares a request; the key
    stays inside the :class:`~bgcut_nb.core.config.ApiKey` until then, never in a plain dict
    of one of our frames."""

    def __init__(self, key: ApiKey) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = _RedactedHeader(f"Bearer {self._key.reveal()}")
        return request

    def __repr__(self) -> str:
        return f"_BearerAuth({self._key!r})"

    def __reduce__(self):
        raise TypeError("API keys are never pickled")


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the connection failed before any byte of the request went out."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", None)
        # NewConnectionError (refused, DNS) subclasses ConnectTimeoutError in urllib3 2.
        return isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
    return False


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        # urllib3 parses both forms (seconds, HTTP date); lift its own cap so ours decides.
        return Retry(retry_after_max=2**31).parse_retry_after(value)
    except urllib3.exceptions.InvalidHeader:
        return None


def _error_from_response(response: requests.Response) -> APIError:
    """Map a non-2xx answer to the error hierarchy; any body shape gives a readable detail."""
    detail: object = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
    if detail is None:
        text = " ".join(response.text.split())[:200]
        reason = response.reason or "error"
        detail = f"HTTP {response.status_code} {reason}" + (f": {text}" if text else "")
    return error_for_status(response.status_code, detail, retry_after=_retry_after(response))


class RemoteBackend(Backend):
    """The :class:`~bgcut_nb.contract.backend.Backend` contract over the BackgroundCut v3 HTTP API.

    ``api_key`` and ``api_base`` default to ``BGCUT_API_KEY`` and ``BGCUT_API_BASE`` (else the
    public service). Without a key,
    :class:`~bgcut_nb.contract.errors.AuthenticationError` is raised at construction, before
    anything is sent. Timeouts are the spec's: 60 s for an upload, 300 s for processing,
    with a short ``connect_timeout``. ``requests_per_minute`` is the plan's limit (default
    ``BGCUT_REQUESTS_PER_MINUTE``, else learnt from 429s); ``pool_size`` the connections kept
    for reuse (a batch raises it to its thread count).
    """

    def __init__(
        self,
        api_key: str | ApiKey | None = None,
        api_base: str | None = None,
        *,
        connect_timeout: float = 10.0,
        upload_timeout: float = 60.0,
        process_timeout: float = 300.0,
        fetch_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        retry_ambiguous_process: bool | None = None,
        pool_size: int = 16,
        costs: CostTable = DEFAULT_COSTS,
        requests_per_minute: float | None = None,
    ) -> None:
        key = resolve_api_key(api_key)
        if key is None:
            raise AuthenticationError(
                "No API key: pass api_key=... or set BGCUT_API_KEY "
                "(use LocalBackend to work without the API)"
            )
        self._key = key
        self._auth = _BearerAuth(key)
        self.api_base = resolve_api_base(api_base)
        self.connect_timeout = connect_timeout
        self.upload_timeout = upload_timeout
        self.process_timeout = process_timeout
        self.fetch_timeout = fetch_timeout
        self.retry = retry or RetryPolicy()
        self.retry_ambiguous_process = retry_ambiguous_process
        self.costs = costs
        self._server_dedups_process = False
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"bgcut-nb/{__version__}"
        self._pool_size = 0
        self._pool_lock = threading.Lock()
        self.reserve_connections(pool_size)
        self.throttle = RateLimiter(resolve_requests_per_minute(requests_per_minute))
        self._pushback = {"rate_limited": 0, "overloaded": 0}

    @property
    def identity(self) -> str:
        """``remote:<api base>``; secret-free (cache layers add the key fingerprint)."""
        return f"remote:{self.api_base}"

    @property
    def key_fingerprint(self) -> str:
        """One-way fingerprint of the API key in use."""
        return self._key.fingerprint

    def __repr__(self) -> str:
        return f"RemoteBackend(api_base={self.api_base!r}, key={self._key!r})"

    def __reduce__(self):
        raise TypeError(
            "RemoteBackend is not picklable (it holds an API key); build one per process "
            "from BGCUT_API_KEY instead"
        )

    # -- the contract --------------------------------------------------------------------

    def upload_image(self, image: ImageInput) -> UploadResult:
        data, filename = read_image_input(image)
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        response = self._send(
            "upload-image",
            "POST",
            self.api_base + UPLOAD_PATH,
            authorized=True,
            repeat_if_sent=True,
            timeout=(self.connect_timeout, self.upload_timeout),
            files={"image": (filename, data, ctype)},
        )
        body = self._json(response, "upload-image")
        if not isinstance(body.get("unique_filename"), str):
            raise APIError("upload-image answered without a unique_filename", response.status_code)
        return UploadResult.from_json(body)

    #: :meth:`process_image` takes an ``idempotency_key`` (the batch runner looks for this).
    accepts_idempotency_key = True

    def process_image(
        self,
        unique_filename: str,
        variants: Iterable[Variant | Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> ProcessResult:
        """Render every variant of an upload; ``idempotency_key`` defaults to one derived from
        the request (see the module docstring), so a repeat is never charged twice."""
        parsed = parse_variants(variants)
        if not isinstance(unique_filename, str) or not unique_filename:
            raise BadRequestError("unique_filename must be a non-empty string")
        check_text(unique_filename, "unique_filename")
        output_variants = [v.to_dict() for v in parsed]
        payload = {"unique_filename": unique_filename, "output_variants": output_variants}
        if not idempotency_key:
            idempotency_key = process_idempotency_key(
                self.key_fingerprint, unique_filename, output_variants
            )
        response = self._send(
            "process-image",
            "POST",
            self.api_base + PROCESS_PATH,
            authorized=True,
            repeat_if_sent=self._may_repeat_process,
            timeout=(self.connect_timeout, self.process_timeout),
            json=payload,
            headers={IDEMPOTENCY_HEADER: idempotency_key},
        )
        result = ProcessResult.from_json(self._json(response, "process-image"))
        missing = [v.variant_name for v in parsed if v.variant_name not in result.output_urls]
        if missing:
            raise APIError(f"process-image answered without output URLs for {missing}", 200)
        return result

    def iter_fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(("http://", "https://")):
            raise BadRequestError(f"RemoteBackend fetches http(s) URLs only, got {url!r}")
        response = self._send(
            "fetch",
            "GET",
            url,
            authorized=False,
            repeat_if_sent=True,
            timeout=(self.connect_timeout, self.fetch_timeout),
            stream=True,
        )
        return self._stream(response, url)

    def output_signals(self, url: str, path: Any, variant: Variant) -> dict[str, Any] | None:
        """Quality signals measured here, on the downloaded file's alpha (the service sends
        none): ``{}`` for outputs without alpha (JPEG, a background colour) or autocropped."""
        from ..engine.signals import assess, measure_output

        return assess(measure_output(path, variant))

    def close(self) -> None:
        self._session.close()

    def pressure(self) -> dict[str, int]:
        """429 (``rate_limited``) and 503 (``overloaded``) answers seen so far, retried or not."""
        with self._pool_lock:
            return dict(self._pushback)

    def reserve_connections(self, connections: int) -> None:
        """Size the connection pool to at least ``connections`` (it only ever grows)."""
        with self._pool_lock:
            if connections <= self._pool_size:
                return
            self._pool_size = connections
            # Retries are ours (see the module docstring), so the adapter itself never repeats.
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=connections, max_retries=0)
            self._session.mount("https://", adapter)
            self._session.mount("http://", adapter)

    def _count_pushback(self, status: int, retry_after: float | None, paced: bool) -> None:
        if status == 429 and paced:
            self.throttle.observe(429, retry_after)
        with self._pool_lock:
            if status == 429:
                self._pushback["rate_limited"] += 1
            elif status == 503:
                self._pushback["overloaded"] += 1

    # -- plumbing --------------------------------------------------------------------------

    def _may_repeat_process(self) -> bool:
        if self.retry_ambiguous_process is not None:
            return self.retry_ambiguous_process
        return self._server_dedups_process

    def _send(
        self,
        op: str,
        method: str,
        url: str,
        *,
        authorized: bool,
        repeat_if_sent: bool | Callable[[], bool],
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One logical request with the retry policy applied; returns a 2xx response."""
        headers = dict(headers or {})
        auth = self._auth if authorized else None  # never the key itself in a local dict
        policy = self.retry
        attempt = 0
        while True:
            if authorized:
                self.throttle.acquire()  # the plan's pace (upload and process count)
            try:
                response = self._session.request(method, url, headers=headers, auth=auth, **kwargs)
                failure = None
            except requests.RequestException as exc:
                # Keep only text: requests' exceptions hold the request, headers included.
                failure, sent = f"{type(exc).__name__}: {exc}", not _never_sent(exc)
            if failure is not None:
                repeat = repeat_if_sent() if callable(repeat_if_sent) else repeat_if_sent
                if attempt < policy.retries and (not sent or repeat):
                    delay = policy.backoff_delay(attempt)
                    log.info("%s: %s; retry %d in %.2fs", op, failure, attempt + 1, delay)
                    time.sleep(delay)
                    attempt += 1
                    continue
                raise self._connection_error(op, url, failure, sent)
            if authorized and IDEMPOTENCY_SUPPORT_HEADER in response.headers:
                self._server_dedups_process = True
            if authorized and response.status_code != 429:
                self.throttle.observe(response.status_code)
            if response.ok:
                return response
            if response.status_code in (429, 503):
                self._count_pushback(response.status_code, _retry_after(response), authorized)
            error = _error_from_response(response)
            response.close()
            if response.status_code not in policy.statuses or attempt >= policy.retries:
                raise error
            retry_after = _retry_after(response)
            if retry_after is not None and retry_after > policy.retry_after_max:
                raise error
            delay = retry_after if retry_after is not None else policy.backoff_delay(attempt)
            log.info("%s: HTTP %d; retry %d in %.2fs", op, error.status, attempt + 1, delay)
            time.sleep(delay)
            attempt += 1

    def _connection_error(self, op: str, url: str, reason: str, sent: bool) -> BgcutError:
        where = url.split("?", 1)[0]  # signed output URLs carry their signature in the query
        if not sent:
            return APIConnectionError(f"{op}: could not connect to {where} ({reason})")
        if op == "process-image":
            return APIConnectionError(
                f"process-image: the connection to {where} failed after the request was sent "
                f"({reason}). The call may or may not have been processed and charged; it is "
                "not repeated automatically because process-image is not idempotent.",
                maybe_processed=True,
            )
        return APIConnectionError(f"{op}: {where} failed ({reason})", maybe_processed=True)

    @staticmethod
    def _json(response: requests.Response, op: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise APIError(f"{op} answered with a body that is not a JSON object", 200)
        return body

    def _stream(self, response: requests.Response, url: str) -> Iterator[bytes]:
        failure = None
        try:
            yield from response.iter_content(_CHUNK)
        except requests.RequestException as exc:
            failure = type(exc).__name__
        finally:
            response.close()
        if failure is not None:
            where = url.split("?", 1)[0]
            raise APIConnectionError(
                f"fetch: {where} broke off mid-download ({failure})", maybe_processed=True
            )
