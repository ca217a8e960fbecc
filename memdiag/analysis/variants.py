"""Variants side by side: each variant against the first listed, the other params equal.

The usual acceptance for a memory fix is "peak down by more than 30%, less than 2× slower".
"""

from __future__ import annotations

from typing import Any

from memdiag.analysis.matrix import slowdown
from memdiag.model import ConfigSummary, VariantPair
from memdiag.params import params_key, same_value

VARIANT_AXIS = "variant"
MIN_PEAK_REDUCTION = 0.30
MAX_SLOWDOWN = 2.0


def compare_variants(
    configs: list[ConfigSummary], axes: dict[str, list[Any]], axis: str = VARIANT_AXIS
) -> list[VariantPair]:
    """Return one pair per other variant and combination of the other axes (empty without one)."""
    values = axes.get(axis, [])
    if len(values) < 2:
        return []
    index = {params_key(c.params): c for c in configs}
    pairs = []
    for base in (c for c in configs if axis in c.params and same_value(c.params[axis], values[0])):
        others = {k: v for k, v in base.params.items() if k != axis}
        for value in values[1:]:
            key = params_key({**base.params, axis: value})
            if key in index:
                pairs.append(_pair(base, index[key], others, axis))
    return pairs


def _pair(
    base: ConfigSummary, other: ConfigSummary, params: dict[str, Any], axis: str
) -> VariantPair:
    both_ok = base.status == "ok" and other.status == "ok"
    reduction = None
    if both_ok and base.peak_rss_bytes and other.peak_rss_bytes is not None:
        reduction = round(1 - other.peak_rss_bytes / base.peak_rss_bytes, 4)
    slower = slowdown(other, base) if both_ok else None
    meets = None
    if reduction is not None and slower is not None:
        meets = reduction > MIN_PEAK_REDUCTION and slower < MAX_SLOWDOWN
    return VariantPair(
        params=params,
        baseline=base.params[axis],
        variant=other.params[axis],
        baseline_peak_bytes=base.peak_rss_bytes,
        variant_peak_bytes=other.peak_rss_bytes,
        peak_reduction=reduction,
        slowdown=slower,
        meets=meets,
    )
