"""The BackgroundCut v3 API over HTTP: :class:`RemoteBackend`.

Talks to the real service (``https://api.backgroundcut.co``) or to the project's own server
(``bgcut-nb serve``) with one pooled :class:`requests.Session`.

Retry policy (:class:`~bgcut_nb.backends.retry.RetryPolicy`, a pure decision: see that module):
``429``/``502``/``503``/``504`` and failures to connect are retried with backoff, honouring
``Retry-After``; other statuses never are. A failure *after* the request was sent is ambiguous
(the server may have done the work): ``upload-image`` and output downloads are repeated,
``process-image`` (which costs credits) is not, and :class:`APIConnectionError` is raised with
``maybe_processed=True``, unless the server deduplicates. Every ``process-image`` call carries
an ``Idempotency-Key`` header (the same on every attempt); a server that deduplicates on it says
so with the ``Bgcut-Idempotency: process-image`` response header (the project's own server
does), and only then is an ambiguous failure repeated, because the repeat is answered from the
first call's result without a second charge. Override with ``retry_ambiguous_process=True/False``.

Idempotency-Key: the caller may pass one (the notebook batch passes a key it keeps in the reuse
cache until the answer is recorded); without one it is **derived** from the request
(:func:`~bgcut_nb.contract.wire.process_idempotency_key`: the API key's fingerprint, the
``unique_filename`` and the normalised variants in order), never random. So asking again for
the same variants of the same upload, on a retry or in a later run, is the same request: a
server that deduplicates answers it from the first call (fresh URLs, no second charge) as
long as the upload lives. A different upload of the same image, or other variants, is another
request and is charged.

Rate limit (:class:`~bgcut_nb.backends.pacing.Pacer`): ``upload-image`` and
``process-image`` are paced at the plan's ``requests_per_minute`` (argument, else
``BGCUT_REQUESTS_PER_MINUTE``); without one the pace is learnt from 429 answers and their
``Retry-After``. Output downloads are not paced. :meth:`RemoteBackend.pressure` counts the 429
and 503 answers seen, which a batch uses to adapt its concurrency.

The API key is held as :class:`~bgcut_nb.core.config.ApiKey`: it is sent only in the Authorization
header of API calls (never when fetching output URLs), and never appears in reprs, logs,
exception text or pickles. Errors raised here never chain to ``requests`` exceptions, whose
request objects hold the headers.

The transport is a :class:`requests.Session` (its own adapters never retry: the policy does) or
any object with the same ``request(method, url, **kwargs)`` and ``close()`` (``transport=``), so
the retry loop can be driven without sockets.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol, TypedDict, Unpack

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from ..contract.backend import Backend, ImageInput, ProcessResult, UploadResult, read_image_input
from ..contract.errors import (
    APIConnectionError,
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
from .pacing import Pacer
from .retry import GiveUp, Retry, RetryPolicy, retry_after_seconds

__all__ = [
    "RemoteBackend",
    "RetryPolicy",
    "Timeouts",
    "Transport",
    "APIConnectionError",
    "IDEMPOTENCY_HEADER",
]

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait: to connect, then for each call's answer (the spec's: 60 s for an
    upload, 300 s for processing)."""

    connect: float = 10.0
    upload: float = 60.0
    process: float = 300.0
    fetch: float = 60.0


class Transport(Protocol):
    """What sends one HTTP request: :class:`requests.Session`'s ``request`` and ``close``."""

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response: ...

    def close(self) -> None: ...


class Shorthands(TypedDict, total=False):
    """Single options that stand for a field of a grouped one (kept for existing callers)."""

    connect_timeout: float  # Timeouts.connect
    upload_timeout: float  # Timeouts.upload
    process_timeout: float  # Timeouts.process
    fetch_timeout: float  # Timeouts.fetch
    retry_ambiguous_process: bool | None  # RetryPolicy.retry_ambiguous_process
    requests_per_minute: float | None  # Pacer(requests_per_minute)


_TIMEOUT_FIELDS = {f"{name}_timeout": name for name in ("connect", "upload", "process", "fetch")}


class _Failed(NamedTuple):
    """An attempt the transport could not complete: the failure as text (never the exception,
    which holds the request and its headers) and what the policy decided."""

    reason: str
    decision: Retry | GiveUp


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
    retry_after = retry_after_seconds(response.headers)
    return error_for_status(response.status_code, detail, retry_after=retry_after)


def _default_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = f"bgcut-nb/{__version__}"
    return session


def _grouped(
    retry: RetryPolicy | None,
    timeouts: Timeouts | None,
    pacer: Pacer | None,
    options: Shorthands,
) -> tuple[RetryPolicy, Timeouts, Pacer]:
    """The grouped options with the single ones (:class:`Shorthands`) folded in."""
    retry = retry or RetryPolicy()
    ambiguous = options.get("retry_ambiguous_process")
    if ambiguous is not None:
        retry = replace(retry, retry_ambiguous_process=ambiguous)
    single = {_TIMEOUT_FIELDS[k]: v for k, v in options.items() if k in _TIMEOUT_FIELDS}
    timeouts = replace(timeouts or Timeouts(), **single)
    rpm = options.get("requests_per_minute")
    if pacer is not None and rpm is not None:
        raise TypeError("pass pacer= or requests_per_minute=, not both")
    return retry, timeouts, pacer or Pacer(resolve_requests_per_minute(rpm))


class RemoteBackend(Backend):
    """The :class:`~bgcut_nb.contract.backend.Backend` contract over the BackgroundCut v3 HTTP API.

    ``api_key`` and ``api_base`` default to ``BGCUT_API_KEY`` and ``BGCUT_API_BASE`` (else the
    public service). Without a key,
    :class:`~bgcut_nb.contract.errors.AuthenticationError` is raised at construction, before
    anything is sent. Options come in groups: ``retry`` (:class:`RetryPolicy`), ``timeouts``
    (:class:`Timeouts`), ``pacer`` (:class:`~bgcut_nb.backends.pacing.Pacer`, else one at
    ``requests_per_minute``: default ``BGCUT_REQUESTS_PER_MINUTE``, else learnt from 429s) and
    ``transport`` (default: a :class:`requests.Session`); ``pool_size`` is the connections kept
    for reuse (a batch raises it to its thread count). The single options ``connect_timeout``,
    ``upload_timeout``, ``process_timeout``, ``fetch_timeout``, ``retry_ambiguous_process`` and
    ``requests_per_minute`` set one field of their group.
    """

    def __init__(
        self,
        api_key: str | ApiKey | None = None,
        api_base: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        pacer: Pacer | None = None,
        transport: Transport | None = None,
        pool_size: int = 16,
        costs: CostTable = DEFAULT_COSTS,
        **options: Unpack[Shorthands],
    ) -> None:
        unknown = set(options) - set(Shorthands.__annotations__)
        if unknown:  # as Python itself would say for a missing parameter
            raise TypeError(f"RemoteBackend() got an unexpected keyword argument {min(unknown)!r}")
        key = resolve_api_key(api_key)
        if key is None:
            raise AuthenticationError(
                "No API key: pass api_key=... or set BGCUT_API_KEY "
                "(use LocalBackend to work without the API)"
            )
        self._key = key
        self._auth = _BearerAuth(key)
        self.api_base = resolve_api_base(api_base)
        self.retry, self.timeouts, self.pacer = _grouped(retry, timeouts, pacer, options)
        self.costs = costs
        self._server_dedups_process = False
        self._owns_transport = transport is None
        self._session: Transport = transport or _default_session()  # the transport
        self._pool_size = 0
        self._pool_lock = threading.Lock()
        self.reserve_connections(pool_size)
        self._pushback = {"rate_limited": 0, "overloaded": 0}

    @property
    def retry_ambiguous_process(self) -> bool | None:
        """Whether a ``process-image`` that may have been sent is repeated (``None``: when the
        server deduplicates); the retry policy's field."""
        return self.retry.retry_ambiguous_process

    @retry_ambiguous_process.setter
    def retry_ambiguous_process(self, value: bool | None) -> None:
        self.retry = replace(self.retry, retry_ambiguous_process=value)

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
            timeout=(self.timeouts.connect, self.timeouts.upload),
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
            timeout=(self.timeouts.connect, self.timeouts.process),
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
            timeout=(self.timeouts.connect, self.timeouts.fetch),
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
        """Size the connection pool to at least ``connections`` (it only ever grows; only the
        default transport has a pool to size)."""
        with self._pool_lock:
            if connections <= self._pool_size or not self._owns_transport:
                return
            self._pool_size = connections
            # Retries are ours (see the module docstring), so the adapter itself never repeats.
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=connections, max_retries=0)
            assert isinstance(self._session, requests.Session)
            self._session.mount("https://", adapter)
            self._session.mount("http://", adapter)

    # -- plumbing --------------------------------------------------------------------------

    def _send(
        self,
        op: str,
        method: str,
        url: str,
        *,
        authorized: bool,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One logical request with the retry policy applied; returns a 2xx response."""
        headers = dict(headers or {})
        attempt = 0
        while True:
            outcome = self._attempt(op, method, url, attempt, authorized, headers=headers, **kwargs)
            if isinstance(outcome, _Failed):
                decision = outcome.decision
                if isinstance(decision, GiveUp):
                    raise self._connection_error(op, url, outcome.reason, decision.sent)
                log.info(
                    "%s: %s; retry %d in %.2fs", op, outcome.reason, attempt + 1, decision.after
                )
            elif outcome.ok:
                return outcome
            else:
                decision = self.retry.decide(attempt, outcome.status_code, outcome.headers, op=op)
                error = _error_from_response(outcome)
                outcome.close()
                if isinstance(decision, GiveUp):
                    raise error
                log.info(
                    "%s: HTTP %d; retry %d in %.2fs", op, error.status, attempt + 1, decision.after
                )
            time.sleep(decision.after)
            attempt += 1

    def _attempt(
        self, op: str, method: str, url: str, attempt: int, authorized: bool, **kwargs: Any
    ) -> requests.Response | _Failed:
        """Send once (paced if it counts against the plan) and record the answer."""
        if authorized:
            self.pacer.acquire()  # the plan's pace (upload and process count)
        auth = self._auth if authorized else None  # never the key itself in a local dict
        try:
            response = self._session.request(method, url, auth=auth, **kwargs)
        except requests.RequestException as exc:
            # Keep only text: requests' exceptions hold the request, headers included.
            dedups = self._server_dedups_process
            decision = self.retry.decide(attempt, exc, op=op, server_dedups=dedups)
            return _Failed(f"{type(exc).__name__}: {exc}", decision)
        self._record(response, paced=authorized)
        return response

    def _record(self, response: requests.Response, paced: bool) -> None:
        """What an answer tells: the server deduplicates, the pace held, pushback (429, 503)."""
        status = response.status_code
        if paced and IDEMPOTENCY_SUPPORT_HEADER in response.headers:
            self._server_dedups_process = True
        if paced and status != 429:
            self.pacer.observe(status)
        if status not in (429, 503):
            return
        if status == 429 and paced:
            self.pacer.observe(429, retry_after_seconds(response.headers))
        with self._pool_lock:
            self._pushback["rate_limited" if status == 429 else "overloaded"] += 1

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
