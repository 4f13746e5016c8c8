"""The v3 server's OpenAPI document: the statuses each route answers, and the request bodies
the routes read themselves (documented with ``openapi_extra``, as FastAPI suggests for a body
a route parses on its own)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..contract.wire import IDEMPOTENCY_HEADER
from .schemas import ErrorResponse, ProcessRequest

__all__ = ["responses", "UPLOAD_BODY", "PROCESS_BODY", "document"]

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


def responses(ok: dict[str, Any], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses``: ``ok`` for 200 and ``{"detail"}`` errors for ``statuses``."""
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


UPLOAD_BODY: dict[str, Any] = {
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
}
PROCESS_BODY: dict[str, Any] = {
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
}


def document(app: FastAPI) -> dict[str, Any]:
    """``app``'s OpenAPI document, with :class:`ProcessRequest` among its schemas and no 422."""
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    request_schema = ProcessRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(request_schema.pop("$defs", {}))
    schemas["ProcessRequest"] = request_schema
    # Validation errors are answered 400 (see the handlers), never FastAPI's 422.
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return doc
