"""ASGI middleware bounding request bodies: :class:`BodyLimit`.

A body for a limited path is cut off beyond its byte limit, or when no part of it arrives for
``timeout`` seconds (a stalled upload), by raising the API error the route answers with: the
route's own error for a body too large, 408 for a stalled one. The errors are raised while the
route reads its body, so the checks before it (the key, the rate limit) come first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from ..contract.errors import APIError

__all__ = ["BodyLimit", "stalled"]

#: ``{path: (most bytes, the error a larger body is answered with)}``
Rules = Mapping[str, tuple[int, Callable[[], APIError]]]


def stalled(timeout: float) -> APIError:
    """The 408 of a body that stopped arriving (the app closes the connection after it)."""
    return APIError(f"Request timeout: the request body stalled for {timeout:g} s", 408)


class BodyLimit:
    """Stop reading a request body for a path of ``rules`` beyond its limit, or when no part
    of it arrives for ``timeout`` seconds."""

    def __init__(self, app: Any, rules: Rules, timeout: float) -> None:
        self.app = app
        self.rules = dict(rules)
        self.timeout = timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        rule = self.rules.get(scope.get("path", "")) if scope["type"] == "http" else None
        if rule is None:
            await self.app(scope, receive, send)
            return
        limit, too_large = rule
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise stalled(self.timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large()
            return message

        await self.app(scope, limited_receive, send)
