"""The one error hierarchy every backend raises.

The HTTP API answers errors as JSON ``{"detail": ...}`` with a status; the local engine raises
the same classes with the same wording, so code written against one backend works on the other.
"""

from __future__ import annotations

__all__ = [
    "BgcutError",
    "APIError",
    "BadRequestError",
    "InvalidImageError",
    "AuthenticationError",
    "InsufficientCreditsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ModelUnavailableError",
    "error_for_status",
]

#: The spec's wording for an input that is not a PNG, JPEG or WebP image.
INVALID_IMAGE_DETAIL = "Invalid image format. Supported: PNG, JPG, JPEG, WebP"
#: The spec's wording for an unknown or expired ``unique_filename``.
NOT_FOUND_DETAIL = "Image not found or has expired."


class BgcutError(Exception):
    """Base class of every error raised by bgcut-nb."""


class APIError(BgcutError):
    """An error answered by the v3 API (or the local engine speaking its semantics)."""

    status: int = 0

    def __init__(self, detail: object, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        self.detail = detail
        super().__init__(f"{self.status}: {detail}" if self.status else str(detail))

    def __reduce__(self):  # keep pickling (multiprocessing, caches) faithful
        return (_rebuild_api_error, (type(self), self.detail, self.status, self.__dict__))


def _rebuild_api_error(cls, detail, status, state):
    err = cls.__new__(cls)
    APIError.__init__(err, detail, status)
    err.__dict__.update(state)
    return err


class BadRequestError(APIError):
    """400: missing or invalid fields, bad image, duplicate ``variant_name``, malformed JSON."""

    status = 400


class InvalidImageError(BadRequestError):
    """400: the input is not a decodable PNG, JPEG or WebP image (or is too large to decode)."""

    def __init__(self, detail: object = INVALID_IMAGE_DETAIL, status: int | None = None) -> None:
        super().__init__(detail, status)


class AuthenticationError(APIError):
    """401: missing or invalid Authorization header."""

    status = 401


class InsufficientCreditsError(APIError):
    """402: the account has too few credits for this processing call."""

    status = 402


class NotFoundError(APIError):
    """404: ``unique_filename`` does not exist or has expired."""

    status = 404

    def __init__(self, detail: object = NOT_FOUND_DETAIL, status: int | None = None) -> None:
        super().__init__(detail, status)


class PayloadTooLargeError(APIError):
    """413: the upload is larger than the service accepts."""

    status = 413


class RateLimitError(APIError):
    """429: rate limit exceeded; ``retry_after`` holds the server's hint in seconds, if any."""

    status = 429

    def __init__(
        self,
        detail: object = "Rate limit exceeded",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(detail, status)


class ModelUnavailableError(BgcutError):
    """A segmentation model file could not be found, fetched or verified."""


_BY_STATUS: dict[int, type[APIError]] = {
    cls.status: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        InsufficientCreditsError,
        NotFoundError,
        PayloadTooLargeError,
        RateLimitError,
    )
}


def error_for_status(status: int, detail: object, retry_after: float | None = None) -> APIError:
    """Build the error class that matches an HTTP status (``APIError`` for any other status)."""
    if status == 429:
        return RateLimitError(detail, retry_after=retry_after)
    if status == 400 and detail == INVALID_IMAGE_DETAIL:
        return InvalidImageError(detail)
    cls = _BY_STATUS.get(status)
    return cls(detail) if cls is not None else APIError(detail, status)
