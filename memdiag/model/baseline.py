"""What a gate compares: a baseline's configurations (kind "baseline") and a pytest report's
per-test figures (kind "pytest"), in bytes and seconds.

The gate reads these files as plain documents (analysis/gate.py); these models are their
shapes, so that a damaged file is refused field by field before the gate reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from memdiag.model.files import load_json
from memdiag.model.run import Run, Status
from memdiag.model.schema import SchemaError, build


@dataclass(frozen=True)
class BaselineEntry:
    """One configuration accepted as the baseline: medians and [min, max] spreads."""

    target: str
    params: dict[str, Any]
    status: Status
    peak_rss_bytes: int | None = None
    peak_rss_spread: list[int] | None = None
    peak_heap_bytes: int | None = None
    peak_heap_spread: list[int] | None = None
    wall_s: float | None = None
    wall_spread: list[float] | None = None


@dataclass(frozen=True)
class Baseline:
    """The configurations a gate compares new results with, and where they came from."""

    configs: list[BaselineEntry]
    sources: list[str] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""


@dataclass(frozen=True)
class TestFigures:
    """One test's memory in a pytest report (`pytest --memdiag-report`)."""

    __test__ = False  # not a test class, whatever pytest's name rules say

    params: dict[str, Any]
    peak_rss_bytes: int | None = None
    peak_heap_bytes: int | None = None
    wall_s: float | None = None


@dataclass(frozen=True)
class PytestReport:
    """Per-test figures written by memdiag's pytest plugin."""

    configs: list[TestFigures]
    env: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepRuns:
    """What a gate reads of a sweep: its target, axes, base params and runs."""

    target: str
    axes: dict[str, list[Any]]
    runs: list[Run]
    base: dict[str, Any] = field(default_factory=dict)


# The comparable kinds' shapes, as a gate reads them.
COMPARABLE_MODELS: dict[str, type] = {
    "run": Run,
    "sweep": SweepRuns,
    "pytest": PytestReport,
    "baseline": Baseline,
}


def load_comparable_document(
    path: str | os.PathLike[str], kinds: tuple[str, ...]
) -> dict[str, Any]:
    """Return the document at `path` (one of `kinds`) once its kind's model accepts it
    field by field; a field that does not fit is a MemdiagError naming file and field."""
    from memdiag.errors import MemdiagError

    data = load_json(path, kinds)
    try:
        build(COMPARABLE_MODELS[data["kind"]], data)
    except SchemaError as exc:
        raise MemdiagError(f"{path}: {exc}") from None
    return data
