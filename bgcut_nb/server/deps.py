"""FastAPI dependencies of the v3 routes: the service, the API key and request counts.

:data:`ApiKey` authenticates ``Authorization: Bearer KEY`` (401 with the service's reason; the
OpenAPI document names it the ``bearerAuth`` scheme) and then takes one request from the key's
rate limit (429 with ``Retry-After``); a route declaring it gets the key's hash, and FastAPI
runs it once per request however many dependencies ask for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from .service import V3Service

__all__ = ["ApiKey", "Service", "counted", "service_of", "stats_of"]


def service_of(request: Request) -> V3Service:
    """The app's :class:`V3Service`."""
    return request.app.state.service


def stats_of(request: Request) -> Counter:
    """The app's request counts (``upload``, ``process``, ``file``, and the service's)."""
    return request.app.state.stats


Service = Annotated[V3Service, Depends(service_of)]


class _BearerKey(HTTPBearer):
    """The key hash of ``Authorization: Bearer KEY``, else 401 with the reason."""

    def __init__(self) -> None:
        super().__init__(scheme_name="bearerAuth")

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        return service_of(request).authenticate(request.headers.get("authorization"))


async def _rate_limited(request: Request, hashed: Annotated[str, Depends(_BearerKey())]) -> str:
    service_of(request).check_rate(hashed)
    return hashed


#: The authenticated key's hash, one request taken from its rate limit.
ApiKey = Annotated[str, Depends(_rate_limited)]


def counted(kind: str) -> Callable[[Request], Awaitable[None]]:
    """A route dependency counting the route's requests in the app's stats as ``kind``."""

    async def count(request: Request) -> None:
        stats_of(request)[kind] += 1

    return count
