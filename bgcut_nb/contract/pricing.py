"""Credit costs of processing calls: one table shared by the client's estimator and the server.

The spec states that ``autocrop`` adds 0.5 credits per variant and that each processing call
"deducts credits based on the variants requested"; uploads are free. It does not publish the
base price of a variant, so the default table charges 1 credit per variant. Pass your own
:class:`CostTable` where your plan differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .variants import Variant, parse_variants

__all__ = ["CostTable", "DEFAULT_COSTS"]


@dataclass(frozen=True)
class CostTable:
    """Credits charged per variant in a processing call."""

    per_variant: float = 1.0
    autocrop: float = 0.5
    upload: float = 0.0

    def variant_cost(self, variant: Variant) -> float:
        """Credits for one variant."""
        return self.per_variant + (self.autocrop if variant.autocrop else 0.0)

    def process_cost(self, variants: Iterable[Variant | Mapping[str, Any]]) -> float:
        """Credits for one processing call with these variants."""
        return sum(self.variant_cost(v) for v in parse_variants(variants))


DEFAULT_COSTS = CostTable()
