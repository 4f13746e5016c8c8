"""bgcut-nb: remove image backgrounds at dataset scale from Jupyter and pandas."""

from . import accessor as _accessor  # noqa: F401 - registers df.bgcut and s.bgcut
from .backend import Backend, ProcessResult, UploadResult
from .batch import BatchError, BatchStoppedWarning
from .cache import ReuseCache
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
    "BatchError",
    "BatchStoppedWarning",
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
    "ReuseCache",
    "UploadResult",
    "Variant",
    "matte",
    "parse_variants",
]
