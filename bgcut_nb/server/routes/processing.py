"""``POST /v3/remove-bg/process-image/``: render output variants of an uploaded image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from ...contract.errors import BadRequestError
from ...contract.wire import IDEMPOTENCY_HEADER, IDEMPOTENCY_SUPPORT_HEADER, PROCESS_PATH
from ..deps import ApiKey, Service, counted
from ..openapi import PROCESS_BODY, responses
from ..schemas import ProcessRequest, ProcessResponse

__all__ = ["router", "BODY_RULE"]

router = APIRouter()


def _too_large() -> BadRequestError:
    return BadRequestError("Request body too large for a process-image call")


#: The most bytes a process-image body may have, and the answer to a larger one.
BODY_RULE = (1024 * 1024, _too_large)


async def _body(request: Request, _key: ApiKey) -> ProcessRequest:
    """The JSON body, validated by :class:`ProcessRequest` (``Variant``'s rules)."""
    return ProcessRequest.from_json(await request.body())


@router.post(
    PROCESS_PATH,
    summary="Render any number of output variants of an uploaded image",
    responses=responses(
        {"model": ProcessResponse, "description": "Processed"}, 400, 401, 402, 404, 413, 429
    ),
    openapi_extra=PROCESS_BODY,
    dependencies=[Depends(counted("process"))],
)
async def process_image(
    request: Request,
    service: Service,
    key: ApiKey,
    body: Annotated[ProcessRequest, Depends(_body)],
    idempotency_key: Annotated[
        str | None, Header(alias=IDEMPOTENCY_HEADER, include_in_schema=False)
    ] = None,  # documented in PROCESS_BODY as a plain optional string
) -> JSONResponse:
    answer = await service.process(
        key, body.unique_filename, body.variants(), str(request.base_url), idempotency_key
    )
    return JSONResponse(answer, headers={IDEMPOTENCY_SUPPORT_HEADER: "process-image"})
