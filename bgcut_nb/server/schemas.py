"""Request and response schemas of the v3 API, for the OpenAPI document.

Validation itself is :class:`~bgcut_nb.contract.variants.Variant`'s (the one rule set shared
with the client and the local engine); these models only describe the same rules for
documentation and for schema-driven fuzzing, which checks that the two agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..contract.variants import MAX_VARIANTS_PER_CALL

__all__ = [
    "OutputVariant",
    "ProcessRequest",
    "ProcessResponse",
    "UploadResponse",
    "ErrorResponse",
]


class OutputVariant(BaseModel):
    """One entry of ``output_variants``."""

    model_config = ConfigDict(extra="forbid")

    variant_name: str = Field(
        pattern=r"\S",
        description="Your identifier for this output; the key in output_urls. Unique per call.",
    )
    max_resolution: int | None = Field(
        12_000_000, gt=0, description="Maximum output pixel count (width x height)."
    )
    format: Literal["png", "jpg", "webp"] | None = "png"
    quality: Literal["high", "medium", "low"] | None = "high"
    background_color: str | None = Field(
        None,
        # JSON Schema patterns are ECMA-262: without the m flag '$' is the very end (no
        # trailing newline); the validating rule is Variant's fullmatch
        pattern=r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$",
        description="Fill colour for the removed background; null for transparent.",
    )
    output_compression: int | None = Field(
        85, ge=1, le=100, description="JPG/WebP compression level."
    )
    autocrop: bool | None = Field(
        False, description="Crop to the subject's bounding box (+0.5 credits per variant)."
    )


class ProcessRequest(BaseModel):
    """Body of ``process-image``."""

    model_config = ConfigDict(extra="forbid")

    unique_filename: str = Field(min_length=1)
    output_variants: list[OutputVariant] = Field(
        min_length=1,
        max_length=MAX_VARIANTS_PER_CALL,
        description=f"At most {MAX_VARIANTS_PER_CALL} variants per call.",
    )


class UploadResponse(BaseModel):
    unique_filename: str


class ProcessResponse(BaseModel):
    unique_filename: str
    input_url: str
    output_urls: dict[str, str]


class ErrorResponse(BaseModel):
    detail: str
