"""Output variants: the spec's fields, defaults and validation rules.

A :class:`Variant` is what one entry of ``output_variants`` says. It is built from and serialised
to the API's JSON dicts, and validation raises
:class:`~bgcut_nb.contract.errors.BadRequestError` with the same cases the API answers 400 for, so a
bad request fails before it costs anything.
"""

from __future__ import annotations

import difflib
import json
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from .errors import BadRequestError

__all__ = [
    "Variant",
    "did_you_mean",
    "parse_variants",
    "FORMATS",
    "QUALITIES",
    "DEFAULT_MAX_RESOLUTION",
    "MAX_VARIANTS_PER_CALL",
    "SPEC_EXAMPLE_VARIANTS",
    "check_text",
    "RULES",
]

Format = Literal["png", "jpg", "webp"]
Quality = Literal["high", "medium", "low"]
FORMATS: tuple[str, ...] = get_args(Format)
QUALITIES: tuple[str, ...] = get_args(Quality)
DEFAULT_MAX_RESOLUTION = 12_000_000
DEFAULT_OUTPUT_COMPRESSION = 85
MIN_OUTPUT_COMPRESSION, MAX_OUTPUT_COMPRESSION = 1, 100
#: Most ``output_variants`` one process-image call may ask for (the spec names no limit; each
#: variant is a stored file, so the server bounds them per call).
MAX_VARIANTS_PER_CALL = 20

_HEX_PATTERN = r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})"
_HEX = re.compile(_HEX_PATTERN)  # used with fullmatch

#: Key of a :class:`Variant` field's ``metadata`` holding its rules as data: a ``description``
#: and the constraints ``__post_init__`` enforces, in annotated-types' terms (``gt``, ``ge``,
#: ``le``; ``pattern`` as JSON Schema writes it). The server's request schema is built from
#: these, the field types (``Literal`` for the enums) and the defaults.
RULES = "rules"


def _rules(description: str | None = None, **constraints: object) -> dict[str, object]:
    described = {"description": description} if description else {}
    return {RULES: {**described, **constraints}}


def check_text(value: str, what: str) -> str:
    """``value`` if it can be written as UTF-8 (JSON, SQLite, file names), else a 400 naming
    ``what``: a lone surrogate such as ``"\\ud800"`` would fail only after the work."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError(
            f"{what} must be valid UTF-8 text, got {ascii(value)} (a lone surrogate)"
        ) from None
    return value


def _shown(name: object) -> str:
    """A variant name as error messages quote it (escaped when not UTF-8 text)."""
    if isinstance(name, str):
        try:
            name.encode("utf-8")
            return name
        except UnicodeEncodeError:
            pass
    return ascii(name)


def _closest(word: object, options: Iterable[str]) -> str | None:
    if not isinstance(word, str):
        return None
    lowered = {option.lower(): option for option in options}
    close = difflib.get_close_matches(word.lower(), lowered, n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def did_you_mean(words: Iterable[object], options: Iterable[str]) -> str:
    """``"; did you mean 'format'?"`` for near misses of ``options`` (difflib), else ``""``.

    With several words: ``"; did you mean 'autocrop' for 'autocorp', 'format' for 'fromat'?"``.
    """
    words, options = list(words), list(options)
    pairs = [(w, c) for w in words if (c := _closest(w, options)) is not None]
    if not pairs:
        return ""
    if len(words) == 1:
        return f"; did you mean {pairs[0][1]!r}?"
    return "; did you mean " + ", ".join(f"{c!r} for {w!r}" for w, c in pairs) + "?"


def _as_int(value: object) -> int | None:
    """``value`` as a Python ``int`` if it is a whole number (numpy's integers too, e.g. from a
    DataFrame cell), never a bool; else ``None``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return None


def _as_bool(value: object) -> bool | None:
    """``value`` as a Python ``bool`` if it is one (``numpy.bool_`` too); else ``None``."""
    if isinstance(value, bool):
        return value
    dtype = getattr(value, "dtype", None)
    if dtype is not None and dtype.kind == "b" and getattr(value, "ndim", None) == 0:
        return bool(value)  # a numpy scalar, not an array
    return None


@dataclass(frozen=True)
class Variant:
    """One requested output. Field names, types and defaults are exactly the spec's."""

    variant_name: str = field(
        metadata=_rules(
            "Your identifier for this output; the key in output_urls. Unique per call.",
            pattern=r"\S",  # not blank
        )
    )
    max_resolution: int = field(
        default=DEFAULT_MAX_RESOLUTION,
        metadata=_rules("Maximum output pixel count (width x height).", gt=0),
    )
    format: Format = "png"
    quality: Quality = "high"
    background_color: str | None = field(
        default=None,
        metadata=_rules(
            "Fill colour for the removed background; null for transparent.",
            # JSON Schema patterns are ECMA-262: without the m flag '$' is the very end
            pattern=f"^{_HEX_PATTERN}$",
        ),
    )
    output_compression: int = field(
        default=DEFAULT_OUTPUT_COMPRESSION,
        metadata=_rules(
            "JPG/WebP compression level.", ge=MIN_OUTPUT_COMPRESSION, le=MAX_OUTPUT_COMPRESSION
        ),
    )
    autocrop: bool = field(
        default=False,
        metadata=_rules("Crop to the subject's bounding box (+0.5 credits per variant)."),
    )

    def __post_init__(self) -> None:
        name = self.variant_name
        if not isinstance(name, str) or not name.strip():
            raise BadRequestError("variant_name is required and must be a non-empty string")
        check_text(name, "variant_name")
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, str):
                check_text(value, f"Variant '{name}': {item.name}")
        max_resolution = _as_int(self.max_resolution)
        if max_resolution is None or max_resolution <= 0:
            raise BadRequestError(
                f"Variant '{name}': max_resolution must be a positive integer, "
                f"got {self.max_resolution!r}"
            )
        object.__setattr__(self, "max_resolution", max_resolution)
        if self.format not in FORMATS:
            raise BadRequestError(
                f"Variant '{name}': invalid format {self.format!r}. Options: {', '.join(FORMATS)}"
                + did_you_mean([self.format], FORMATS)
            )
        if self.quality not in QUALITIES:
            raise BadRequestError(
                f"Variant '{name}': invalid quality {self.quality!r}. "
                f"Options: {', '.join(QUALITIES)}" + did_you_mean([self.quality], QUALITIES)
            )
        color = self.background_color
        if color is not None:
            if not isinstance(color, str) or not _HEX.fullmatch(color):
                raise BadRequestError(
                    f"Variant '{name}': background_color must be a hex string like '#ffffff', "
                    f"got {color!r}"
                )
            object.__setattr__(self, "background_color", _expand_hex(color))
        comp = _as_int(self.output_compression)
        if comp is None or not MIN_OUTPUT_COMPRESSION <= comp <= MAX_OUTPUT_COMPRESSION:
            raise BadRequestError(
                f"Variant '{name}': output_compression must be an integer from "
                f"{MIN_OUTPUT_COMPRESSION} to {MAX_OUTPUT_COMPRESSION}, "
                f"got {self.output_compression!r}"
            )
        object.__setattr__(self, "output_compression", comp)
        autocrop = _as_bool(self.autocrop)
        if autocrop is None:
            raise BadRequestError(
                f"Variant '{name}': autocrop must be true or false, got {self.autocrop!r}"
            )
        object.__setattr__(self, "autocrop", autocrop)

    @classmethod
    def from_dict(cls, data: Variant | Mapping[str, Any]) -> Variant:
        """Build from one API ``output_variants`` entry; unknown fields are a 400."""
        if isinstance(data, Variant):
            return data
        if not isinstance(data, Mapping):
            raise BadRequestError(f"Each output variant must be a JSON object, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known, key=str)
        if unknown:
            hint = did_you_mean(unknown, sorted(known))
            raise BadRequestError(
                f"Variant '{_shown(data.get('variant_name', '?'))}': "
                f"unknown field(s) {unknown}{hint}"
            )
        if data.get("variant_name") is None:
            raise BadRequestError("variant_name is required for every output variant")
        # JSON null means "the default" for every optional field but background_color,
        # where null is the documented "transparent"
        values = {k: v for k, v in data.items() if not (v is None and k != "background_color")}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The API's JSON form, every field explicit."""
        return asdict(self)

    @property
    def rendering(self) -> dict[str, Any]:
        """Everything that decides the output's pixels and bytes (all fields but the name)."""
        data = self.to_dict()
        del data["variant_name"]
        return data

    def cache_key(self) -> str:
        """Canonical text of :attr:`rendering`: equal for variants that render identically."""
        return json.dumps(self.rendering, sort_keys=True, separators=(",", ":"))

    @property
    def extension(self) -> str:
        """File extension of this variant's output."""
        return self.format

    @property
    def has_alpha(self) -> bool:
        """Whether the output keeps an alpha channel (png/webp without a background)."""
        return self.format != "jpg" and self.background_color is None


def _expand_hex(color: str) -> str:
    digits = color[1:].lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits


VariantsLike = Iterable[Variant | Mapping[str, Any]] | Variant | Mapping[str, Any]


def parse_variants(variants: VariantsLike) -> list[Variant]:
    """Validate a request's ``output_variants``: a non-empty list of at most
    :data:`MAX_VARIANTS_PER_CALL` variants with unique names."""
    if isinstance(variants, (Variant, Mapping)):
        variants = [variants]
    if isinstance(variants, (str, bytes)) or not isinstance(variants, Iterable):
        raise BadRequestError("output_variants must be a list of variant objects")
    items = list(variants)
    if len(items) > MAX_VARIANTS_PER_CALL:
        raise BadRequestError(
            f"Too many output_variants: at most {MAX_VARIANTS_PER_CALL} variants per call, "
            f"got {len(items)}; split them over several calls (the upload is reused)"
        )
    parsed = [Variant.from_dict(v) for v in items]
    if not parsed:
        raise BadRequestError("output_variants must contain at least one variant")
    seen: set[str] = set()
    for v in parsed:
        if v.variant_name in seen:
            raise BadRequestError(f"Duplicate variant_name: '{v.variant_name}'")
        seen.add(v.variant_name)
    return parsed


#: The spec's three-variant example: full-resolution PNG, autocropped WebP thumbnail, white JPEG.
SPEC_EXAMPLE_VARIANTS: tuple[Variant, ...] = (
    Variant("full", max_resolution=12_000_000, format="png", quality="high"),
    Variant("thumbnail", max_resolution=250_000, format="webp", quality="medium", autocrop=True),
    Variant(
        "white_bg",
        max_resolution=12_000_000,
        format="jpg",
        background_color="#ffffff",
        output_compression=85,
    ),
)
