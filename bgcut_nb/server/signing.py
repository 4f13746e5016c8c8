"""HMAC-signed, expiring file URLs."""

from __future__ import annotations

import hashlib
import hmac
import math
import time

__all__ = ["UrlSigner"]


class UrlSigner:
    """Signs ``(token, expires)`` pairs; a URL is valid only unexpired and unaltered."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def signature(self, token: str, expires: int) -> str:
        msg = f"{token}\n{expires}".encode("utf-8", "replace")
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def sign(self, token: str, ttl: float) -> tuple[int, str]:
        """``(expires, signature)`` for a URL valid ``ttl`` seconds from now."""
        expires = math.ceil(time.time() + ttl)
        return expires, self.signature(token, expires)

    def verify(self, token: str, expires: int, signature: str) -> bool:
        if expires < time.time():
            return False
        expected = self.signature(token, expires).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))
