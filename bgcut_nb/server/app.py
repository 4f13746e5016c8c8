"""The FastAPI application speaking the BackgroundCut v3 API: :func:`create_app`.

Two endpoints exactly as the spec describes them (``upload-image``, ``process-image``) plus
``GET /v3/files/...`` serving the signed, expiring ``input_url`` and ``output_urls``. Every
error, including malformed JSON, a missing multipart field and schema violations, is answered
as JSON ``{"detail": "..."}`` with the spec's status (400, never FastAPI's 422).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..contract.backend import Backend
from ..contract.errors import APIError, BadRequestError, PayloadTooLargeError, RateLimitError
from ..contract.pricing import DEFAULT_COSTS, CostTable
from ..contract.variants import check_text, parse_variants
from ..contract.wire import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_SUPPORT_HEADER,
    PROCESS_PATH,
    UPLOAD_PATH,
)
from ..core.config import resolve_server_dir
from ..core.version import __version__
from .keys import load_key_secret
from .ledger import Ledger
from .logs import install_redaction
from .schemas import ErrorResponse, ProcessRequest, ProcessResponse, UploadResponse
from .service import FILES_PATH, ServerSettings, V3Service

__all__ = ["create_app"]

log = logging.getLogger("bgcut_nb.server")

#: Room for multipart boundaries and part headers around the image itself.
_MULTIPART_OVERHEAD = 64 * 1024
_MAX_JSON_BYTES = 1024 * 1024
_PROCESS_FIELDS = frozenset({"unique_filename", "output_variants"})

_STATUS_TEXT = {
    400: "Bad request: missing image, invalid format, invalid fields, duplicate variant_name "
    "or malformed JSON",
    401: "Missing or invalid Authorization header",
    402: "Insufficient credits",
    404: "Image not found: unique_filename does not exist, has expired or belongs to another key",
    408: "The request body stalled (no data for the body timeout); the upload was dropped",
    413: "Upload larger than the size limit (12 MB), or the key's storage quota (uploads and "
    "their outputs) is full",
    429: "Rate limit, upload quota or engine queue full; retry after Retry-After seconds",
}


class _BodyTooLarge(Exception):
    pass


class _BodyStalled(Exception):
    pass


class _BodyLimit:
    """ASGI middleware: stop reading a request body for ``path`` beyond ``limits[path]``
    bytes, or when no part of it arrives for ``timeout`` seconds (a stalled upload)."""

    def __init__(self, app: Any, limits: Mapping[str, int], timeout: float) -> None:
        self.app = app
        self.limits = dict(limits)
        self.timeout = timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        limit = self.limits.get(scope.get("path", "")) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise _BodyStalled from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
            return message

        await self.app(scope, limited_receive, send)


def _responses(ok: dict[str, Any], *statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {200: ok}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _STATUS_TEXT[status]}
        if status == 429:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer"},
                }
            }
        out[status] = entry
    return out


_BEARER = [{"bearerAuth": []}]
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {"image": {"type": "string", "format": "binary"}},
                }
            }
        },
    },
    "security": _BEARER,
}
_PROCESS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ProcessRequest"}}
        },
    },
    "parameters": [
        {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "required": False,
            "description": "Repeat a call without a second charge (the same key, same body).",
            "schema": {"type": "string"},
        }
    ],
    "security": _BEARER,
}


def create_app(
    backend: Backend | None = None,
    *,
    api_keys: Mapping[str, float],
    storage_dir: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    db_path: str | os.PathLike[str] | None = None,
    costs: CostTable = DEFAULT_COSTS,
    reset_credits: bool = False,
    stats: Counter | None = None,
    process_max_pixels: int | None = None,
    models: Mapping[str, str] | None = None,
    **settings: Any,
) -> FastAPI:
    """Build the v3 API server over ``backend`` (default: a :class:`LocalBackend` in
    ``<storage_dir>/engine`` using the models in ``model_dir``; ``models`` chooses its
    registry model per quality tier, e.g. ``{"high": "isnet-general-use"}``).

    ``api_keys`` maps each bearer key to its starting credits (a key already in the database
    keeps its balance unless ``reset_credits``). State lives in SQLite at ``db_path``
    (default ``<storage_dir>/server.sqlite3``). ``settings`` are :class:`ServerSettings`
    fields: ``upload_ttl``, ``url_ttl``, ``rate_limit``, ``burst``, ``max_upload_bytes``,
    ``public_url``, ``workers``, ``queue``, ``uploads_per_hour``, ``storage_bytes``,
    ``sweep_interval``, ``body_timeout``. ``process_max_pixels`` is the default engine's
    processing pixel limit. ``stats`` (a Counter) counts handled ``upload``/``process``/``file``
    requests and the service's ``engine_calls``, ``refunds``, ``busy`` and ``swept``.
    """
    options = ServerSettings(**settings)
    install_redaction()  # access logs never show ?api_key=, ?token= or URL signatures
    storage = resolve_server_dir(storage_dir)
    if backend is None:
        from ..backends.local import LocalBackend

        backend = LocalBackend(
            storage / "engine",
            model_dir=model_dir,
            upload_ttl=options.upload_ttl,
            costs=costs,
            models=models,
            **({"process_max_pixels": process_max_pixels} if process_max_pixels else {}),
        )
    ledger = Ledger(Path(db_path) if db_path else storage / "server.sqlite3")
    counts = stats if stats is not None else Counter()
    service = V3Service(
        backend,
        ledger,
        api_keys,
        options,
        costs=costs,
        reset_credits=reset_credits,
        stats=counts,
        key_secret=load_key_secret(storage),
    )

    app = FastAPI(
        title="bgcut-nb v3 server",
        version=__version__,
        description="The BackgroundCut v3 remove-background API over the local engine.",
    )
    app.state.service = service
    app.state.stats = counts
    app.add_middleware(
        _BodyLimit,
        limits={
            UPLOAD_PATH: options.max_upload_bytes + _MULTIPART_OVERHEAD,
            PROCESS_PATH: _MAX_JSON_BYTES,
        },
        timeout=options.body_timeout,
    )
    _install_error_handlers(app)

    def check_length(request: Request, limit: int) -> None:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise PayloadTooLargeError(
                f"Image too large: uploads are limited to "
                f"{options.max_upload_bytes / (1024 * 1024):g} MB"
            )

    @app.post(
        UPLOAD_PATH,
        summary="Upload an image once; returns unique_filename",
        responses=_responses(
            {"model": UploadResponse, "description": "Uploaded"}, 400, 401, 413, 429
        ),
        openapi_extra=_UPLOAD_BODY,
    )
    async def upload_image(request: Request) -> JSONResponse:
        counts["upload"] += 1
        hashed = service.authenticate(request.headers.get("authorization"))
        service.check_rate(hashed)
        check_length(request, options.max_upload_bytes + _MULTIPART_OVERHEAD)
        try:
            form = await request.form(max_files=4, max_fields=16)
        except _BodyTooLarge:
            raise PayloadTooLargeError(
                f"Image too large: uploads are limited to "
                f"{options.max_upload_bytes / (1024 * 1024):g} MB"
            ) from None
        except _BodyStalled:
            raise _stalled(options.body_timeout) from None
        try:
            image = form.get("image")
            if not isinstance(image, UploadFile):
                raise BadRequestError(
                    "Missing image: send the file as multipart/form-data field 'image'"
                )
            data = await image.read()
        finally:
            await form.close()
        answer = await run_in_threadpool(service.upload, hashed, data)
        return JSONResponse(answer, headers={IDEMPOTENCY_SUPPORT_HEADER: "process-image"})

    @app.post(
        PROCESS_PATH,
        summary="Render any number of output variants of an uploaded image",
        responses=_responses(
            {"model": ProcessResponse, "description": "Processed"}, 400, 401, 402, 404, 413, 429
        ),
        openapi_extra=_PROCESS_BODY,
    )
    async def process_image(request: Request) -> JSONResponse:
        counts["process"] += 1
        hashed = service.authenticate(request.headers.get("authorization"))
        service.check_rate(hashed)
        try:
            raw = await request.body()
        except _BodyTooLarge:
            raise BadRequestError("Request body too large for a process-image call") from None
        except _BodyStalled:
            raise _stalled(options.body_timeout) from None
        unique_filename, variants = _parse_process_body(raw)
        answer = await run_in_threadpool(
            service.process,
            hashed,
            unique_filename,
            variants,
            str(request.base_url),
            request.headers.get(IDEMPOTENCY_HEADER),
        )
        return JSONResponse(answer, headers={IDEMPOTENCY_SUPPORT_HEADER: "process-image"})

    @app.get(
        FILES_PATH + "/{token}/{name:path}",
        summary="Download an input or output image (signed, expiring URL)",
        responses={
            200: {
                "description": "The image",
                "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
            },
            400: {"model": ErrorResponse, "description": "Missing or invalid query fields"},
            404: {"model": ErrorResponse, "description": "Unknown, altered or expired URL"},
        },
        response_class=StreamingResponse,
    )
    async def get_file(token: str, name: str, expires: int, signature: str):
        counts["file"] += 1
        chunks, media_type = await run_in_threadpool(service.open_file, token, expires, signature)
        return StreamingResponse(chunks, media_type=media_type)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _parse_process_body(raw: bytes) -> tuple[str, list]:
    """``(unique_filename, variants)`` from a process-image body, or a 400 saying why."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"Malformed JSON body: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequestError("The request body must be a JSON object")
    unknown = sorted(set(payload) - _PROCESS_FIELDS)
    if unknown:
        raise BadRequestError(f"Unknown field(s) {unknown}")
    unique_filename = payload.get("unique_filename")
    if not isinstance(unique_filename, str) or not unique_filename:
        raise BadRequestError("unique_filename is required and must be a non-empty string")
    check_text(unique_filename, "unique_filename")
    variants = payload.get("output_variants")
    if not isinstance(variants, list):
        raise BadRequestError("output_variants is required and must be a list of variants")
    try:
        return unique_filename, parse_variants(variants)
    except BadRequestError:
        raise
    except (TypeError, ValueError) as exc:  # a shape Variant's own checks did not foresee
        raise BadRequestError(f"Invalid output_variants: {exc}") from None


def _stalled(timeout: float) -> APIError:
    return APIError(f"Request timeout: the request body stalled for {timeout:g} s", 408)


def _error(status: int, detail: object, headers: Mapping[str, str] | None = None) -> JSONResponse:
    # a detail quoting client text that is not UTF-8 must not turn the answer into a 500
    text = str(detail).encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"detail": text}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        headers = None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            headers = {"Retry-After": str(max(0, math.ceil(exc.retry_after)))}
        if exc.status == 408:  # the rest of the body is never read: close the connection
            headers = {"Connection": "close"}
        return _error(exc.status, exc.detail, headers)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The client went away mid-request (an abandoned upload): nobody to answer, no traceback.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return _error(400, "Client disconnected before the request was complete")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg"))
        return _error(400, "; ".join(str(p) for p in parts) or "Bad request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "Internal server error")


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    request_schema = ProcessRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(request_schema.pop("$defs", {}))
    schemas["ProcessRequest"] = request_schema
    components["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    # Validation errors are answered 400 (see the handlers), never FastAPI's 422.
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return doc
