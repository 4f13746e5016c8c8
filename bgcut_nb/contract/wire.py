"""What travels on the wire of the v3 API: paths, headers and the service's time limits.

The client (:mod:`bgcut_nb.backends.remote`) and the server (:mod:`bgcut_nb.server`) both read
these, so neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "process_idempotency_key",
    "UPLOAD_PATH",
    "PROCESS_PATH",
    "IDEMPOTENCY_HEADER",
    "IDEMPOTENCY_SUPPORT_HEADER",
    "UPLOAD_LIFETIME",
    "UPLOAD_REUSE_TTL",
]

UPLOAD_PATH = "/v3/remove-bg/upload-image/"
PROCESS_PATH = "/v3/remove-bg/process-image/"
#: Request header naming one logical ``process-image`` call across its retries.
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Response header by which a server says it deduplicates ``process-image`` on that key.
IDEMPOTENCY_SUPPORT_HEADER = "Bgcut-Idempotency"

#: Seconds an uploaded ``unique_filename`` stays usable on the service (the spec: 2 hours).
UPLOAD_LIFETIME = 2 * 60 * 60.0
#: Seconds a client may reuse a remembered upload: safely inside :data:`UPLOAD_LIFETIME`.
UPLOAD_REUSE_TTL = 100 * 60.0


def process_idempotency_key(
    key_fingerprint: str,
    unique_filename: str,
    variants: Iterable[Mapping[str, Any]],
    image_sha256: str = "",
) -> str:
    """The ``Idempotency-Key`` of one ``process-image`` request, derived from what it asks.

    The same API key (by its fingerprint), the same upload, the same variants (their
    normalised JSON, in the order sent) and, when known, the same image bytes give the same
    key, on every retry and every re-run; anything else gives another. A request for another
    upload of the same image is another request (the server matches the upload too).
    """
    canonical = json.dumps(
        {
            "v": 1,
            "key": key_fingerprint,
            "upload": unique_filename,
            "image": image_sha256,
            "variants": [dict(v) for v in variants],
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,  # lone surrogates and all: escaped, never an encoding error
    )
    return "bgcut-" + hashlib.sha256(canonical.encode("ascii")).hexdigest()[:48]
