"""The v3 API's routers, one per concern: uploads, processing, files."""

from __future__ import annotations

from . import files, processing, uploads

__all__ = ["files", "processing", "uploads"]
