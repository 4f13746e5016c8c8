"""bgcut-nb: remove image backgrounds at dataset scale from Jupyter and pandas."""

from .backend import Backend, ProcessResult, UploadResult
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    BgcutError,
    InsufficientCreditsError,
    InvalidImageError,
    ModelUnavailableError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
)
from .local import LocalBackend
from .matting import Matting, matte
from .pricing import DEFAULT_COSTS, CostTable
from .remote import APIConnectionError, RemoteBackend, RetryPolicy
from .variants import Variant, parse_variants

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "Backend",
    "BadRequestError",
    "BgcutError",
    "CostTable",
    "DEFAULT_COSTS",
    "InsufficientCreditsError",
    "InvalidImageError",
    "LocalBackend",
    "Matting",
    "ModelUnavailableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProcessResult",
    "RateLimitError",
    "RemoteBackend",
    "RetryPolicy",
    "UploadResult",
    "Variant",
    "matte",
    "parse_variants",
]
