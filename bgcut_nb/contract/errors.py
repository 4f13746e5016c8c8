"""The one error hierarchy of bgcut-nb: every exception the package raises is defined here.

The HTTP API answers errors as JSON ``{"detail": ...}`` with a status; the local engine raises
the same classes with the same wording, so code written against one backend works on the other.
Every class is importable from ``bgcut_nb`` except the server's own (``ServerError``), which are
answered as HTTP statuses and never reach a client as such::

    BgcutError
    ├── APIError                       an answer of the v3 API (``status``, ``detail``)
    │   ├── BadRequestError            400
    │   │   └── InvalidImageError      400: not a decodable PNG/JPEG/WebP
    │   ├── AuthenticationError        401
    │   ├── InsufficientCreditsError   402
    │   ├── NotFoundError              404
    │   ├── PayloadTooLargeError       413
    │   └── RateLimitError             429 (``retry_after``)
    │       └── ServerBusyError        429 from the server's full engine pool (also a ServerError)
    ├── APIConnectionError             no (full) answer came back (``maybe_processed``)
    ├── ModelUnavailableError          a model file cannot be found, fetched or verified
    ├── BatchError                     a batch stopped on a row's error (``row``, ``result``)
    ├── ImageColumnError               which column holds the images is unclear (also KeyError,
    │                                  ValueError)
    ├── ImageTooLarge                  too many pixels to preview (also ValueError)
    ├── PresetError                    an unknown preset name (also KeyError, ValueError)
    ├── ImageReadError                 a finished file is missing or unreadable (also ValueError)
    │   ├── CanvasError                it cannot be put on a canvas
    │   └── MaskError                  it holds no mask
    └── ServerError                    raised inside the server, answered as a status
        └── QuotaExceeded              an upload would exceed a key's quota (``kind``)

Warnings (``BatchStoppedWarning``, ``EstimateWarning``) are categories for :mod:`warnings`, not
errors, and stay with the code that issues them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

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
    "APIConnectionError",
    "BatchError",
    "ImageColumnError",
    "ImageTooLarge",
    "PresetError",
    "ImageReadError",
    "CanvasError",
    "MaskError",
    "ServerError",
    "ServerBusyError",
    "QuotaExceeded",
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


class APIConnectionError(BgcutError):
    """The API could not be reached, or the connection failed before a full answer came back.

    ``maybe_processed`` is true when the request had been sent, so the server may have done
    the work (and, for ``process-image``, charged for it).
    """

    def __init__(self, message: str, *, maybe_processed: bool = False) -> None:
        super().__init__(message)
        self.maybe_processed = maybe_processed

    def __reduce__(self):
        return (_rebuild_connection_error, (str(self), self.maybe_processed))


def _rebuild_connection_error(message: str, maybe_processed: bool) -> APIConnectionError:
    return APIConnectionError(message, maybe_processed=maybe_processed)


class BatchError(BgcutError):
    """A batch stopped on a row's error with ``errors="raise"``.

    ``row`` is the index label of the row that failed; ``result`` holds every row's outcome
    (finished rows included: a ``BatchResult``), and the accessors add ``frame``: the same as a
    DataFrame.
    """

    def __init__(self, message: str, *, row: Hashable = None, result: Any = None):
        super().__init__(message)
        self.row = row
        self.result = result


class ImageColumnError(BgcutError, KeyError, ValueError):
    """Which column holds the images is unclear: none or several look like images, or the one
    named is not a column. ``str()`` speaks Python (``pass image_col='<column>'``);
    :meth:`explain` lets another front end (the command line) name its own option.
    """

    def __init__(
        self,
        columns: Iterable[Hashable],
        *,
        candidates: Iterable[Hashable] = (),
        missing: Hashable | None = None,
    ) -> None:
        self.columns = list(columns)
        self.candidates = list(candidates)
        self.missing = missing
        super().__init__(f"bgcut: {self.explain()}")

    def explain(self, option: str = "image_col", usage: str = "pass image_col='<column>'") -> str:
        """The message, naming ``option`` and saying how to give it (``usage``)."""
        available = ", ".join(repr(c) for c in self.columns) or "none"
        if self.missing is not None:
            why = f"{option} {self.missing!r} is not a column"
        elif self.candidates:
            why = f"several columns look like image paths {self.candidates!r}; {usage}"
        else:
            why = f"no column looks like image paths (.png/.jpg/.jpeg/.webp); {usage}"
        return f"{why}. Available columns: {available}"

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class ImageTooLarge(BgcutError, ValueError):
    """An image with more pixels than the preview limit even at its smallest decoding scale:
    a thumbnail would decode all of it, so none is made (``info``, an ``ImageInfo``, says its
    size)."""

    def __init__(self, info: Any) -> None:
        super().__init__(f"too large to preview: {info.width}x{info.height}")
        self.info = info


class PresetError(BgcutError, KeyError, ValueError):
    """An unknown preset name; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class ImageReadError(BgcutError, ValueError):
    """An image file is missing or cannot be decoded; the message says which."""


class CanvasError(ImageReadError):
    """The cut-out cannot be put on a canvas (unreadable, or no subject in it)."""


class MaskError(ImageReadError):
    """An output that holds no mask (no alpha channel and not greyscale) or cannot be read."""


class ServerError(BgcutError):
    """Raised inside the server (``bgcut-nb serve``) and answered as an HTTP status."""


class ServerBusyError(RateLimitError, ServerError):
    """Every worker is busy and the queue is full (answered 429 with ``Retry-After``)."""


class QuotaExceeded(ServerError):
    """An upload would exceed a key's quota: ``kind`` is ``"uploads"`` or ``"bytes"``."""

    def __init__(self, kind: str, limit: float, retry_after: float | None = None) -> None:
        super().__init__(kind)
        self.kind, self.limit, self.retry_after = kind, limit, retry_after


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
