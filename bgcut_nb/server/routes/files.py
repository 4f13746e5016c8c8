"""``GET /v3/files/{token}/{name}``: the signed, expiring ``input_url`` and ``output_urls``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..deps import Service, stats_of
from ..schemas import ErrorResponse
from ..service import FILES_PATH

__all__ = ["router"]

router = APIRouter()


@router.get(
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
async def get_file(
    request: Request, service: Service, token: str, name: str, expires: int, signature: str
) -> StreamingResponse:
    stats_of(request)["file"] += 1  # here, not a dependency: a malformed query is not counted
    chunks, media_type = await run_in_threadpool(service.open_file, token, expires, signature)
    return StreamingResponse(chunks, media_type=media_type)
