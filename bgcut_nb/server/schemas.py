"""Request and response bodies of the v3 API as pydantic models.

The variant rules have one source, :mod:`bgcut_nb.contract.variants`: :class:`OutputVariant`'s
fields, types, defaults, descriptions and documented constraints are read from
:class:`~bgcut_nb.contract.variants.Variant`'s dataclass fields (their ``metadata[RULES]``), and
validating a body runs ``Variant``'s own parsing, so a bad body is answered with ``Variant``'s
400 messages (a :class:`~bgcut_nb.contract.errors.BadRequestError`, which pydantic passes on
unchanged). The JSON Schema these models produce is what the OpenAPI document states, and the
schema-driven fuzzing (tests/test_fuzz.py) checks that the server agrees with it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ..contract.errors import BadRequestError
from ..contract.variants import MAX_VARIANTS_PER_CALL, RULES, Variant, check_text, parse_variants

__all__ = [
    "OutputVariant",
    "ProcessRequest",
    "ProcessResponse",
    "UploadResponse",
    "ErrorResponse",
]


class _VariantBody(BaseModel):
    """Base of :class:`OutputVariant`: validation is :meth:`Variant.from_dict`'s."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="wrap")
    @classmethod
    def _variant_rules(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, cls):
            return data
        return cls.of(Variant.from_dict(data))

    @classmethod
    def of(cls, variant: Variant) -> Any:
        """The body entry of an already validated :class:`Variant`."""
        return cls.model_construct(**variant.to_dict())

    def to_variant(self) -> Variant:
        """This entry as the contract's :class:`Variant`."""
        return Variant(**self.model_dump())


def _variant_fields() -> dict[str, Any]:
    """``create_model`` fields from :class:`Variant`'s: JSON ``null`` means "the default" for
    every field that has one (see :meth:`Variant.from_dict`), so those are nullable."""
    hints = get_type_hints(Variant)
    out: dict[str, Any] = {}
    for item in dataclasses.fields(Variant):
        rules = dict(item.metadata.get(RULES, {}))
        if item.default is dataclasses.MISSING:
            out[item.name] = (hints[item.name], Field(**rules))
        else:
            out[item.name] = (hints[item.name] | None, Field(item.default, **rules))
    return out


OutputVariant: type[_VariantBody] = create_model(
    "OutputVariant",
    __base__=_VariantBody,
    __doc__="One entry of ``output_variants``.",
    __module__=__name__,
    **_variant_fields(),
)

_PROCESS_FIELDS = ("unique_filename", "output_variants")


class ProcessRequest(BaseModel):
    """Body of ``process-image``."""

    model_config = ConfigDict(extra="forbid")

    unique_filename: str = Field(min_length=1)
    output_variants: list[OutputVariant] = Field(  # type: ignore[valid-type]
        min_length=1,
        max_length=MAX_VARIANTS_PER_CALL,
        description=f"At most {MAX_VARIANTS_PER_CALL} variants per call.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _request_rules(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise BadRequestError("The request body must be a JSON object")
        unknown = sorted(set(data) - set(_PROCESS_FIELDS))
        if unknown:
            raise BadRequestError(f"Unknown field(s) {unknown}")
        unique_filename = data.get("unique_filename")
        if not isinstance(unique_filename, str) or not unique_filename:
            raise BadRequestError("unique_filename is required and must be a non-empty string")
        check_text(unique_filename, "unique_filename")
        variants = data.get("output_variants")
        if not isinstance(variants, list):
            raise BadRequestError("output_variants is required and must be a list of variants")
        return cls.model_construct(
            unique_filename=unique_filename,
            output_variants=[OutputVariant.of(v) for v in _parse_variants(variants)],
        )

    @classmethod
    def from_json(cls, raw: bytes) -> ProcessRequest:
        """Parse and validate a request body; a :class:`BadRequestError` says what is wrong."""
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise BadRequestError(f"Malformed JSON body: {exc}") from None
        return cls.model_validate(payload)

    def variants(self) -> list[Variant]:
        """``output_variants`` as the contract's :class:`Variant` objects."""
        entries: list[_VariantBody] = self.output_variants
        return [v.to_variant() for v in entries]


def _parse_variants(variants: list) -> list[Variant]:
    try:
        return parse_variants(variants)
    except BadRequestError:
        raise
    except (TypeError, ValueError) as exc:  # a shape Variant's own checks did not foresee
        raise BadRequestError(f"Invalid output_variants: {exc}") from None


class UploadResponse(BaseModel):
    unique_filename: str


class ProcessResponse(BaseModel):
    unique_filename: str
    input_url: str
    output_urls: dict[str, str]


class ErrorResponse(BaseModel):
    detail: str
