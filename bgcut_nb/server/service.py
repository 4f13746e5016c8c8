"""The v3 API's semantics on the server side, independent of HTTP.

:class:`V3Service` puts accounts, credits, rate limits, upload ownership and expiry, signed file
URLs and idempotent charging around any :class:`~bgcut_nb.contract.backend.Backend`
(the local engine). Engine work runs on a bounded :class:`~bgcut_nb.server.pool.EnginePool`
(full: 429 with ``Retry-After``), paid by credits reserved before it starts and refunded if it
fails; uploads are limited per key (uploads per hour, bytes stored); a background sweeper
deletes expired uploads (with their outputs) and file tokens on a timer.

Idempotent answers: a charged call's answer is journalled for good under its key's
``Idempotency-Key``; a repeat with the same key and request is answered from it, with freshly
signed URLs and no charge, for as long as the upload lives (outputs the engine lost meanwhile
are rendered again, free); once the upload has expired the repeat is a 404 like any call on it.
The routes (:mod:`bgcut_nb.server.routes`) only parse requests and format answers. A
process call is a coroutine: it awaits its engine work on the pool without holding a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import mimetypes
import os
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote, urlparse
from urllib.request import url2pathname

from anyio import to_thread

from ..contract.backend import Backend
from ..contract.errors import (
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
)
from ..contract.pricing import DEFAULT_COSTS, CostTable
from ..contract.variants import Variant
from ..contract.wire import UPLOAD_LIFETIME
from ..core.names import safe_filename
from .keys import key_hash, legacy_key_hash, load_key_secret, normalise_keys
from .ledger import Ledger, QuotaExceeded
from .pool import EnginePool
from .ratelimit import TokenBucketLimiter
from .signing import UrlSigner

__all__ = ["ServerSettings", "V3Service", "FILES_PATH", "upload_too_large"]

log = logging.getLogger("bgcut_nb.server")

FILES_PATH = "/v3/files"
FILE_NOT_FOUND_DETAIL = "File not found or its URL has expired."


@dataclass(frozen=True)
class ServerSettings:
    """Tunable limits of the server (defaults follow the real service where it says)."""

    upload_ttl: float = UPLOAD_LIFETIME
    url_ttl: float = 3600.0
    rate_limit: float = 10.0
    burst: int = 20
    max_upload_bytes: int = 12 * 1024 * 1024
    public_url: str | None = None
    #: Engine worker threads (0: one per core) and calls that may wait for one (None: 2 per
    #: worker); beyond that, process-image is answered 429 with Retry-After.
    workers: int = 0
    queue: int | None = None
    #: Per-key quotas (0: unlimited): uploads in any hour, and bytes of live (unexpired) uploads
    #: with the outputs rendered from them.
    uploads_per_hour: int = 1000
    storage_bytes: int = 1024 * 1024 * 1024
    #: Seconds between sweeps of expired uploads, outputs and file tokens (0: no sweeper).
    sweep_interval: float = 60.0
    #: Seconds a request body may stall between two chunks before it is answered 408.
    body_timeout: float = 15.0


class V3Service:
    """Upload and process for authenticated keys, over a backend and a :class:`Ledger`."""

    def __init__(
        self,
        backend: Backend,
        ledger: Ledger,
        api_keys: Mapping[str, float],
        settings: ServerSettings = ServerSettings(),
        *,
        costs: CostTable = DEFAULT_COSTS,
        reset_credits: bool = False,
        stats: Counter | None = None,
        key_secret: bytes | None = None,
    ) -> None:
        self.backend = backend
        self.ledger = ledger
        self.settings = settings
        self.costs = costs
        #: ``engine_calls`` (work started), ``refunds``, ``busy`` (429: pool full), ``swept``.
        self.stats: Counter = stats if stats is not None else Counter()
        # key hashes are HMACs under this server's secret (default: beside the database)
        self._key_secret = key_secret or load_key_secret(ledger.path.parent)
        self._keys = normalise_keys(api_keys, self._key_secret)
        for key in api_keys:  # a database made with the old unkeyed hashes keeps its balances
            if ledger.rekey(legacy_key_hash(key), self.key_hash(key)):
                log.info("migrated key %s to a keyed hash", self.key_hash(key)[:16])
        for hashed, credits in self._keys.items():
            ledger.provision(hashed, credits, reset=reset_credits)
        refunded = ledger.refund_reserved()  # calls cut short by a stop are not paid for
        if refunded:
            log.warning("refunded %d processing call(s) interrupted by a restart", refunded)
        self._limiter = TokenBucketLimiter(settings.rate_limit, settings.burst)
        self._signer = UrlSigner(ledger.url_secret())
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        self.pool = EnginePool(settings.workers, settings.queue)
        # Decoding an upload to check it takes memory too: at most one per engine worker.
        self._ingest = threading.BoundedSemaphore(self.pool.workers)
        self._closed = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self) -> None:
        """Start the engine pool and the sweeper (the app's lifespan does, at startup)."""
        self.pool.start()
        if self.settings.sweep_interval > 0 and self._sweeper is None:
            self._closed.clear()
            self._sweeper = threading.Thread(
                target=self._sweep_loop, name="bgcut-sweeper", daemon=True
            )
            self._sweeper.start()

    def close(self) -> None:
        """Stop the sweeper and the engine pool (the backend is left open); a later
        :meth:`start` starts them again."""
        self._closed.set()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.join(10)
        self.pool.close()

    # -- accounts -----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> str:
        """The key hash for an ``Authorization: Bearer KEY`` header, else 401."""
        if not authorization:
            raise AuthenticationError("Missing Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Authorization header must be 'Bearer YOUR_API_KEY'")
        hashed = self.key_hash(token)
        if hashed not in self._keys:
            raise AuthenticationError("Invalid API key")
        return hashed

    def check_rate(self, hashed: str) -> None:
        """Take one request from the key's token bucket, else 429 with ``retry_after``."""
        wait = self._limiter.acquire(hashed)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise RateLimitError(
                f"Rate limit exceeded: retry after {retry_after} s", retry_after=retry_after
            )

    def key_hash(self, api_key: str) -> str:
        """What the database and the logs hold for a key: its HMAC under this server's secret."""
        return key_hash(api_key, self._key_secret)

    def credits(self, api_key: str) -> float | None:
        """Credits left for a key (``None`` if unknown)."""
        return self.ledger.balance(self.key_hash(api_key))

    # -- the two endpoints --------------------------------------------------------------------

    def upload(self, hashed: str, data: bytes) -> dict[str, str]:
        """Store an image for this key; returns ``{"unique_filename": ...}``.

        Over a quota: 429 (uploads per hour, with ``Retry-After``) or 413 (bytes stored).
        """
        if len(data) > self.settings.max_upload_bytes:
            raise upload_too_large(self.settings.max_upload_bytes)
        if not data:
            raise BadRequestError("Missing image: the 'image' file is empty")
        unique_filename = str(uuid.uuid4())
        try:
            self.ledger.add_upload(
                unique_filename,
                hashed,
                "",
                self.settings.upload_ttl,
                size=len(data),
                max_per_hour=self.settings.uploads_per_hour,
                max_bytes=self.settings.storage_bytes,
            )
        except QuotaExceeded as exc:
            raise self._quota_error(exc, hashed) from None
        try:
            with self._ingest:
                local = self.backend.upload_image(data)
        except BaseException:
            self.ledger.void_upload(unique_filename)
            raise
        self.ledger.set_local_name(unique_filename, local.unique_filename)
        log.info("upload key_id=%s unique_filename=%s", hashed[:16], unique_filename)
        return {"unique_filename": unique_filename}

    def _quota_error(self, exc: QuotaExceeded, hashed: str) -> Exception:
        if exc.kind == "uploads":
            wait = max(1, math.ceil(exc.retry_after or 1))
            return RateLimitError(
                f"Upload quota exceeded: at most {exc.limit:g} uploads per hour per key; "
                f"retry after {wait} s",
                retry_after=wait,
            )
        return PayloadTooLargeError(
            f"Storage quota exceeded: this key's unexpired uploads and their outputs may hold "
            f"at most "
            f"{_mb(int(exc.limit))} ({_mb(self.ledger.stored_bytes(hashed))} stored now); "
            f"uploads expire {self.settings.upload_ttl:g} s after they were made"
        )

    async def process(
        self,
        hashed: str,
        unique_filename: str,
        variants: list[Variant],
        base_url: str,
        idempotency_key: str | None = None,
    ) -> dict[str, object]:
        """Render every variant, charging once per ``Idempotency-Key`` (or per call).

        A coroutine: the engine work runs on the pool, awaited without holding a thread; the
        ledger's and the disk's short steps run on AnyIO's worker threads."""
        call = _Call.of(hashed, unique_filename, variants, idempotency_key)
        async with self._call_lock(hashed, call.idem):
            plan = await to_thread.run_sync(self._plan, call)
            if plan.prior is None:
                result = await self._process_and_charge(call, plan)
            else:
                result = await self._replay(call, plan)
        return await to_thread.run_sync(self._publish, unique_filename, result, base_url)

    def _plan(self, call: _Call) -> _Plan:
        """What a call needs before any work: its earlier answer (a repeat), its upload (else
        404) and, for a new call, its cost (storage full: refused unpaid)."""
        prior = self.ledger.find_charge(call.hashed, call.idem)
        if prior is not None and prior.request_hash != call.request_hash:
            raise BadRequestError("Idempotency-Key was already used for a different request")
        local_name = self.ledger.find_upload(call.unique_filename, call.hashed)
        if local_name is None:
            raise NotFoundError()
        if prior is not None:
            return _Plan(local_name, prior.result, rerender=not self._outputs_exist(prior.result))
        room = self.settings.storage_bytes
        if room > 0 and self.ledger.stored_bytes(call.hashed) >= room:
            raise self._quota_error(QuotaExceeded("bytes", room), call.hashed)
        return _Plan(local_name, cost=self.costs.process_cost(call.variants))

    async def _process_and_charge(self, call: _Call, plan: _Plan) -> dict[str, object]:
        if self.pool.admitted >= self.pool.capacity:
            self.stats["busy"] += 1  # counted here; slot() below refuses it with Retry-After
        with self.pool.slot() as slot:  # full: ServerBusyError (429), nothing reserved
            # Credits first, work second: a call that cannot be paid never runs, and one that
            # fails is refunded. Reservation is one transaction, so racing calls cannot overdraw.
            reservation = await to_thread.run_sync(self._reserve, call, plan.cost)
            result = await slot.run(self._paid_render, reservation, plan.local_name, call.variants)
        await to_thread.run_sync(self._count_outputs, call, result)
        log.info(
            "process key_id=%s variants=%d charged=%g",
            call.hashed[:16],
            len(call.variants),
            plan.cost,
        )
        return result

    def _reserve(self, call: _Call, cost: float) -> int:
        reservation = self.ledger.reserve(
            call.hashed, cost, idempotency_key=call.idem, request_hash=call.request_hash
        )
        if reservation is None:
            raise _insufficient(cost, self.ledger.balance(call.hashed) or 0.0)
        return reservation

    def _paid_render(
        self, reservation: int, local_name: str, variants: list[Variant]
    ) -> dict[str, object]:
        """The engine work of a paid call, on a pool worker: settled when it succeeds,
        refunded when it fails (here, so an abandoned wait cannot skip either)."""
        try:
            result = self._render(local_name, variants)
        except BaseException:
            self.ledger.refund(reservation)
            self.stats["refunds"] += 1
            raise
        self.ledger.settle(reservation, result)
        return result

    def _count_outputs(self, call: _Call, result: dict[str, object]) -> None:
        try:
            self.ledger.add_outputs(call.unique_filename, self._output_sizes(result))
        except Exception:  # delivered and paid: a failed count must not fail the call
            log.warning("could not count the outputs of a call", exc_info=True)

    async def _replay(self, call: _Call, plan: _Plan) -> dict[str, object]:
        """The paid answer of an earlier call with this key, without a second charge.

        Its upload must still live (outputs go with it: else 404, and the client's new upload
        is a new request). Outputs the engine lost meanwhile are rendered again, free.
        """
        assert plan.prior is not None
        if not plan.rerender:
            log.info("process key_id=%s replayed (no charge)", call.hashed[:16])
            return plan.prior
        with self.pool.slot() as slot:
            result = await slot.run(self._render, plan.local_name, call.variants)
        await to_thread.run_sync(self.ledger.update_result, call.hashed, call.idem, result)
        log.info("process key_id=%s replayed, outputs rendered again (no charge)", call.hashed[:16])
        return result

    def _outputs_exist(self, result: dict[str, object]) -> bool:
        urls = result.get("output_urls")
        if not isinstance(urls, dict):
            return False
        for url in urls.values():
            chunks = self.backend.iter_fetch(url)
            try:
                next(iter(chunks), None)
            except (NotFoundError, OSError):
                return False
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        return True

    def _render(self, local_name: str, variants: list[Variant]) -> dict[str, object]:
        self.stats["engine_calls"] += 1
        return self.backend.process_image(local_name, variants).to_json()

    def _output_sizes(self, result: dict) -> dict[str, int]:
        """``{engine URL: bytes}`` of a call's outputs (files: their size on disk)."""
        sizes = {}
        for url in set(result["output_urls"].values()):
            parsed = urlparse(url)
            if parsed.scheme == "file":
                sizes[url] = os.path.getsize(url2pathname(parsed.path))
            else:
                sizes[url] = sum(len(chunk) for chunk in self.backend.iter_fetch(url))
        return sizes

    # -- files --------------------------------------------------------------------------------

    def _publish(self, unique_filename: str, result: dict, base_url: str) -> dict[str, object]:
        """Swap the engine's URLs for signed, expiring URLs of this server."""
        base = (self.settings.public_url or base_url).rstrip("/")
        tokens: dict[str, str] = {}

        def signed(engine_url: str, name: str) -> str:
            token = secrets.token_urlsafe(18)
            tokens[token] = engine_url
            expires, signature = self._signer.sign(token, self.settings.url_ttl)
            suffix = PurePosixPath(urlparse(engine_url).path).suffix
            # The file name is cosmetic (the token finds the file): a slug of the variant name,
            # so no '/', '..', '%', '?' or '#' of a variant_name can change the URL's route.
            slug = quote(safe_filename(name, "output"), safe="")
            return (
                f"{base}{FILES_PATH}/{token}/{slug}{suffix}?expires={expires}&signature={signature}"
            )

        output_urls = {name: signed(url, name) for name, url in result["output_urls"].items()}
        input_url = signed(result["input_url"], "input") if result.get("input_url") else ""
        self.ledger.add_files(tokens, self.settings.url_ttl)
        return {
            "unique_filename": unique_filename,
            "input_url": input_url,
            "output_urls": output_urls,
        }

    def open_file(self, token: str, expires: int, signature: str) -> tuple[Iterator[bytes], str]:
        """``(chunks, media type)`` of a signed file URL; 404 once expired or if altered."""
        if not self._signer.verify(token, expires, signature):
            raise NotFoundError(FILE_NOT_FOUND_DETAIL)
        engine_url = self.ledger.find_file(token)
        if engine_url is None:
            raise NotFoundError(FILE_NOT_FOUND_DETAIL)
        media_type = mimetypes.guess_type(urlparse(engine_url).path)[0]
        chunks = iter(self.backend.iter_fetch(engine_url))
        first = next(chunks, b"")  # surface a missing file as 404 before answering 200
        return _prepend(first, chunks), media_type or "application/octet-stream"

    # -- helpers ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _call_lock(self, hashed: str, idem: str) -> AsyncIterator[None]:
        """Serialise calls that share an Idempotency-Key (a retry racing its original). The
        calls all run on the server's one event loop, so the table needs no lock of its own."""
        k = (hashed, idem)
        lock, users = self._locks.get(k, (asyncio.Lock(), 0))
        self._locks[k] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[k]
            if users == 1:
                del self._locks[k]
            else:
                self._locks[k] = (lock, users - 1)

    def sweep(self) -> int:
        """Delete expired uploads (with their outputs) and file tokens; returns how many
        uploads went."""
        expired = self.ledger.purge_expired()
        forget = getattr(self.backend, "forget_upload", None)
        if forget is not None:
            for local_name in expired:
                forget(local_name)
        sweep_engine = getattr(self.backend, "sweep_expired", None)
        if sweep_engine is not None:
            sweep_engine()  # the engine's own expiry (uploads made outside this server)
        self.stats["swept"] += len(expired)
        return len(expired)

    def _sweep_loop(self) -> None:
        while not self._closed.wait(self.settings.sweep_interval):
            try:
                self.sweep()
            except Exception:  # a failed sweep is retried next time; the server keeps going
                log.warning("storage sweep failed", exc_info=True)


@dataclass(frozen=True)
class _Call:
    """One process-image call: who, what, and the key its charge is journalled under."""

    hashed: str
    unique_filename: str
    variants: list[Variant]
    idem: str
    request_hash: str

    @classmethod
    def of(
        cls, hashed: str, unique_filename: str, variants: list[Variant], idem: str | None
    ) -> _Call:
        request_hash = hashlib.sha256(
            json.dumps([unique_filename, [v.to_dict() for v in variants]], sort_keys=True).encode()
        ).hexdigest()
        return cls(hashed, unique_filename, variants, idem or uuid.uuid4().hex, request_hash)


@dataclass(frozen=True)
class _Plan:
    """What :meth:`V3Service._plan` found: the upload's engine name and either the earlier
    answer of a repeat (``prior``; ``rerender`` if its outputs are gone) or the cost."""

    local_name: str
    prior: dict[str, object] | None = None
    rerender: bool = False
    cost: float = 0.0


def upload_too_large(limit: int) -> PayloadTooLargeError:
    """The 413 of an image over the upload limit of ``limit`` bytes."""
    return PayloadTooLargeError(f"Image too large: uploads are limited to {_mb(limit)}")


def _insufficient(cost: float, balance: float) -> InsufficientCreditsError:
    return InsufficientCreditsError(
        f"Insufficient credits: this call costs {cost:g} credits, the balance is {balance:g}"
    )


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
