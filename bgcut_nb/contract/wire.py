"""What travels on the wire of the v3 API: paths, headers and the service's time limits.

The client (:mod:`bgcut_nb.backends.remote`) and the server (:mod:`bgcut_nb.server`) both read
these, so neither imports the other.
"""

from __future__ import annotations

__all__ = [
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
