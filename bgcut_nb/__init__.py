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


def reset() -> None:
    """Forget every process-wide registry: close the reuse caches :func:`default_cache`
    opened, forget the backends made for ``backend=None``, drop the shared ONNX Runtime
    sessions and :func:`matte`'s engines (their memory is freed once no backend holds them),
    and forget which model files were verified and which missing providers were warned about.
    Backends made before keep working; what is made after starts afresh (a changed
    ``BGCUT_CACHE_DIR``, a replaced model file)."""
    from .batch.options import forget_backends
    from .batch.reuse import close_default_caches
    from .engine.matting import release_shared_matting
    from .engine.models import forget_verified
    from .engine.providers import forget_warnings
    from .engine.segmenter import release_segmenters

    close_default_caches()
    forget_backends()
    release_shared_matting()
    release_segmenters()
    forget_verified()
    forget_warnings()


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
    "reset",
]
