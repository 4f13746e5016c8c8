"""Marketplace presets: one table of published image rules, and what each preset renders.

Every number lives in :data:`PRESETS`, each rule with the page it comes from. A rule marked
``required=False`` is the marketplace's *recommendation*, not a rule it enforces: ``check``
reports a miss as a warning and still says ``ok``. Measures (see :mod:`.compliance`):

* ``fill``: the subject's bounding box along its longer side as a share of the frame's side
  (``max(box_w / W, box_h / H)``), which is how the 85% of Amazon's main-image rule is read
  ("the product must fill 85% or more of the image", measured with the longest side).
* ``purity``: share of the border band's pixels that are white (all channels >= 255 - tolerance).
* ``longest`` / ``shortest`` / ``width``: pixels; ``megapixels``; ``bytes``: file size.
* ``format`` / ``mode``: Pillow's format name and colour mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..contract.errors import PresetError

__all__ = ["Rule", "Preset", "PRESETS", "preset", "preset_names", "PresetError"]

AMAZON_MAIN = "https://sellercentral.amazon.com/help/hub/reference/external/G1881"
AMAZON_TECH = "https://sellercentral.amazon.com/gp/help/external/G9FUUH87RBNXGKB7"
SHOPIFY = "https://help.shopify.com/en/manual/products/product-media/product-media-types"
ETSY = "https://help.etsy.com/hc/en-us/articles/115015663347"
EBAY = "https://www.ebay.com/help/policies/listing-policies/picture-policy?id=4370"
EBAY_DEV = "https://developer.ebay.com/support/kb-article?KBid=1489"
GOOGLE = "https://support.google.com/merchants/answer/6324350"

#: Comparisons a rule may make between the measured value and its ``value``.
OPS = (">=", "<=", "in")


@dataclass(frozen=True)
class Rule:
    """One published requirement: ``measure op value`` (e.g. ``fill >= 0.85``)."""

    measure: str
    op: str
    value: Any
    source: str
    required: bool = True
    note: str = ""

    def passes(self, measured: Any) -> bool:
        if self.op == ">=":
            return measured >= self.value
        if self.op == "<=":
            return measured <= self.value
        return measured in self.value

    def describe(self, measured: Any) -> str:
        """``"fill 0.62 < 0.85"``: the measure, what was found and what the rule asks."""
        if self.op == "in":
            return f"{self.measure} {measured} not in {'/'.join(sorted(self.value))}"
        failed = "<" if self.op == ">=" else ">"
        return f"{self.measure} {_fmt(measured)} {failed} {_fmt(self.value)}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


@dataclass(frozen=True)
class Preset:
    """A marketplace's main-image rules plus how our canvas step meets them.

    ``size``: the square canvas side in px; ``fill``: the share of the side the subject's longer
    side is scaled to (above the rule's minimum, so JPEG edges and soft alpha keep it passing);
    ``quality``: JPEG quality; the cut-out is rendered by the variant :meth:`variant` returns.
    """

    name: str
    marketplace: str
    size: int
    fill: float
    rules: tuple[Rule, ...]
    format: str = "JPEG"
    quality: int = 92
    border: float = 0.01
    white_tolerance: int = 0
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def variant_name(self) -> str:
        return f"{self.name}-cutout"

    def variant(self) -> dict[str, Any]:
        """The API variant whose output the canvas step starts from: a full-quality PNG with
        alpha, at no more pixels than the API's default budget."""
        return {"variant_name": self.variant_name, "format": "png", "quality": "high"}

    def canvas_key(self) -> str:
        """What the canvas output depends on besides its cut-out (part of its file name)."""
        return f"{self.size}-{self.fill}-{self.quality}-{self.format}"


def _r(measure: str, op: str, value: Any, source: str, required: bool = True, note: str = ""):
    return Rule(measure, op, value, source, required, note)


_AMAZON_FORMATS = frozenset({"JPEG", "TIFF", "PNG", "GIF"})
_GOOGLE_FORMATS = frozenset({"JPEG", "WEBP", "PNG", "GIF", "BMP", "TIFF"})
_RGB = frozenset({"RGB"})

#: The one table of marketplace numbers. Sources are the marketplaces' own help pages; where a
#: number reached us only through a page quoting the marketplace, ``note`` says so.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "amazon-main",
            "Amazon (main image)",
            size=2000,
            fill=0.90,
            rules=(
                _r("purity", ">=", 1.0, AMAZON_MAIN, note="pure white background, RGB 255"),
                _r("fill", ">=", 0.85, AMAZON_MAIN, note="product fills 85% or more"),
                _r("longest", ">=", 1000, AMAZON_TECH, note="1,000 px enables zoom"),
                _r("longest", ">=", 1600, AMAZON_MAIN, False, "recommended for zoom"),
                _r("longest", "<=", 10000, AMAZON_TECH),
                _r("format", "in", _AMAZON_FORMATS, AMAZON_TECH, note="JPEG preferred"),
                _r("mode", "in", frozenset({"RGB", "CMYK"}), AMAZON_TECH, note="RGB preferred"),
            ),
            notes="main image: pure white RGB 255, no text/props (not checked)",
        ),
        Preset(
            "shopify",
            "Shopify (product image)",
            size=2048,
            fill=0.85,
            rules=(
                _r("megapixels", "<=", 25.0, SHOPIFY, note="5000 x 5000 px at most"),
                _r("longest", "<=", 5000, SHOPIFY),
                _r("bytes", "<=", 20_000_000, SHOPIFY, note="under 20 MB"),
                _r("format", "in", frozenset({"JPEG", "PNG", "GIF", "WEBP"}), SHOPIFY),
                _r("shortest", ">=", 2048, SHOPIFY, False, "2048 x 2048 square recommended"),
            ),
            notes="no background or fill rule; square 2048 px recommended",
        ),
        Preset(
            "etsy",
            "Etsy (listing photo)",
            size=2000,
            fill=0.85,
            rules=(
                _r("width", ">=", 635, ETSY, note="at least 635 px wide (quoted by sellers)"),
                _r("shortest", ">=", 2000, ETSY, False, "2000 px shortest side recommended"),
                _r("format", "in", frozenset({"JPEG", "PNG", "GIF"}), ETSY),
            ),
            notes="no background or fill rule",
        ),
        Preset(
            "ebay",
            "eBay (listing picture)",
            size=1600,
            fill=0.85,
            rules=(
                _r("longest", ">=", 500, EBAY, note="at least 500 px on the longest side"),
                _r("longest", ">=", 1000, EBAY_DEV, False, "1000 px recommended (API warning)"),
                _r("format", "in", frozenset({"JPEG", "PNG", "GIF", "TIFF", "BMP", "WEBP"}), EBAY),
            ),
            quality=90,
            notes="no borders, text or watermarks (not checked); JPEG quality 90 recommended",
        ),
        Preset(
            "google-merchant",
            "Google Merchant Center (image_link)",
            size=1500,
            fill=0.85,
            rules=(
                _r("shortest", ">=", 100, GOOGLE, note="100 x 100 px (250 x 250 for apparel)"),
                _r("megapixels", "<=", 64.0, GOOGLE),
                _r("bytes", "<=", 16_000_000, GOOGLE, note="16 MB"),
                _r("format", "in", _GOOGLE_FORMATS, GOOGLE),
                _r("fill", ">=", 0.75, GOOGLE, False, "product 75-90% of the image"),
                _r("fill", "<=", 0.90, GOOGLE, False, "product 75-90% of the image"),
                _r("purity", ">=", 0.99, GOOGLE, False, "white or transparent background"),
                _r("shortest", ">=", 1500, GOOGLE, False, "1500 x 1500 px recommended"),
            ),
            white_tolerance=3,
        ),
    )
}
assert all(r.op in OPS for p in PRESETS.values() for r in p.rules)


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset(name: str | Preset) -> Preset:
    """The preset called ``name`` (``"amazon-main"``, ``"shopify"``, ``"etsy"``, ``"ebay"``,
    ``"google-merchant"``); a :class:`Preset` is returned as is."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise PresetError(
            f"bgcut: unknown preset {name!r}; known presets: {', '.join(preset_names())}"
        ) from None
