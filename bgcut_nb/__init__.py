"""bgcut-nb: remove image backgrounds at dataset scale from Jupyter and pandas."""

import sys as _sys

from .backends.local import LocalBackend
from .backends.remote import APIConnectionError, RemoteBackend, RetryPolicy
from .batch.columns import ImageColumnError
from .batch.reuse import ReuseCache
from .batch.runner import BatchError, BatchStoppedWarning
from .contract.backend import Backend, ProcessResult, UploadResult
from .contract.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    BgcutError,
    CanvasError,
    ImageReadError,
    ImageTooLarge,
    InsufficientCreditsError,
    InvalidImageError,
    MaskError,
    ModelUnavailableError,
    NotFoundError,
    PayloadTooLargeError,
    PresetError,
    RateLimitError,
)
from .contract.pricing import DEFAULT_COSTS, CostTable
from .contract.variants import Variant, parse_variants
from .core.version import __version__
from .dataset.presets import Preset, preset
from .engine.matting import Matting, matte
from .notebook import accessor as _accessor  # noqa: F401 - registers df.bgcut and s.bgcut
from .notebook.accessor import EstimateWarning

if "dask.dataframe" in _sys.modules:  # dask came first: register ddf.bgcut (never import dask)
    from .notebook import dask_accessor as _dask  # noqa: F401

__all__ = [
    "__version__",
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "Backend",
    "BatchError",
    "BatchStoppedWarning",
    "BadRequestError",
    "BgcutError",
    "CanvasError",
    "CostTable",
    "DEFAULT_COSTS",
    "EstimateWarning",
    "ImageColumnError",
    "ImageReadError",
    "ImageTooLarge",
    "InsufficientCreditsError",
    "InvalidImageError",
    "LocalBackend",
    "MaskError",
    "Matting",
    "ModelUnavailableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "Preset",
    "PresetError",
    "ProcessResult",
    "RateLimitError",
    "RemoteBackend",
    "RetryPolicy",
    "ReuseCache",
    "UploadResult",
    "Variant",
    "matte",
    "parse_variants",
    "preset",
]
