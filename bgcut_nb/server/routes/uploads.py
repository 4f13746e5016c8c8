"""``POST /v3/remove-bg/upload-image/``: store an image once, answer its ``unique_filename``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ...contract.errors import APIError, BadRequestError
from ...contract.wire import IDEMPOTENCY_SUPPORT_HEADER, UPLOAD_PATH
from ..deps import ApiKey, Service, counted
from ..openapi import UPLOAD_BODY, responses
from ..schemas import UploadResponse
from ..service import ServerSettings, upload_too_large

__all__ = ["router", "body_rule"]

router = APIRouter()

#: Room for multipart boundaries and part headers around the image itself.
_MULTIPART_OVERHEAD = 64 * 1024


def body_rule(settings: ServerSettings) -> tuple[int, Callable[[], APIError]]:
    """The most bytes an upload's body may have (the image limit plus multipart framing) and
    the answer to a larger one."""
    limit = settings.max_upload_bytes
    return limit + _MULTIPART_OVERHEAD, functools.partial(upload_too_large, limit)


async def _image(request: Request, service: Service, _key: ApiKey) -> bytes:
    """The bytes of the multipart field ``image`` (400 without it, 413 when too large)."""
    limit, too_large = body_rule(service.settings)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large()
    form = await request.form(max_files=4, max_fields=16)
    try:
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise BadRequestError(
                "Missing image: send the file as multipart/form-data field 'image'"
            )
        return await image.read()
    finally:
        await form.close()


@router.post(
    UPLOAD_PATH,
    summary="Upload an image once; returns unique_filename",
    responses=responses({"model": UploadResponse, "description": "Uploaded"}, 400, 401, 413, 429),
    openapi_extra=UPLOAD_BODY,
    dependencies=[Depends(counted("upload"))],
)
async def upload_image(
    service: Service, key: ApiKey, image: Annotated[bytes, Depends(_image)]
) -> JSONResponse:
    answer = await run_in_threadpool(service.upload, key, image)
    return JSONResponse(answer, headers={IDEMPOTENCY_SUPPORT_HEADER: "process-image"})
