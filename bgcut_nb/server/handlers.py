"""The v3 server's exception handlers: every error is JSON ``{"detail": "..."}``.

:class:`~bgcut_nb.contract.errors.APIError` carries its status (429 with ``Retry-After``, 408
closing the connection); a request that fails FastAPI's own validation (the file route's query)
is a 400, never FastAPI's 422; an unexpected error is a logged 500 without its text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..contract.errors import APIError, RateLimitError

__all__ = ["install_error_handlers"]

log = logging.getLogger("bgcut_nb.server")


def _error(status: int, detail: object, headers: Mapping[str, str] | None = None) -> JSONResponse:
    # a detail quoting client text that is not UTF-8 must not turn the answer into a 500
    text = str(detail).encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"detail": text}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    headers = None
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        headers = {"Retry-After": str(max(0, math.ceil(exc.retry_after)))}
    if exc.status == 408:  # the rest of the body is never read: close the connection
        headers = {"Connection": "close"}
    return _error(exc.status, exc.detail, headers)


async def _client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
    # The client went away mid-request (an abandoned upload): nobody to answer, no traceback.
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return _error(400, "Client disconnected before the request was complete")


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg"))
    return _error(400, "; ".join(str(p) for p in parts) or "Bad request")


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, exc.detail, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _error(500, "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as ``{"detail": ...}`` with the v3 API's status."""
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
