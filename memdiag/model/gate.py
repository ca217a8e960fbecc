"""A gate's verdicts: current results compared with a baseline on one metric (kind "gate").

Changes are fractions (0.12 is 12% worse); medians are in the metric's unit (bytes or s).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from memdiag.model.files import SCHEMA_VERSION, load_model
from memdiag.model.schema import Shape, build

Verdict = Literal["ok", "improved", "within noise", "regressed", "failed", "over limit"]
FAILING: tuple[Verdict, ...] = ("regressed", "failed", "over limit")


@dataclass(frozen=True)
class ConfigRef:
    """A configuration found on one side only: its target and parameters."""

    target: str
    params: dict[str, Any]


ConfigRefDict = Annotated[dict[str, Any], Shape(ConfigRef)]


@dataclass(frozen=True)
class GateRow:
    """One configuration compared: baseline and current medians, change, verdict."""

    target: str
    params: dict[str, Any]
    baseline: float | None
    current: float | None
    change: float | None
    verdict: Verdict
    reason: str = ""


@dataclass
class GateResult:
    """The comparison of current results with a baseline, on one metric."""

    metric: str
    tolerance: float
    max_peak: int | None
    rows: list[GateRow] = field(default_factory=list)
    only_in_baseline: list[ConfigRefDict] = field(default_factory=list)
    only_in_current: list[ConfigRefDict] = field(default_factory=list)

    @property
    def failed(self) -> list[GateRow]:
        """The rows that fail the gate: regressed, failed or over the limit."""
        return [row for row in self.rows if row.verdict in FAILING]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (`kind: "gate"`)."""
        return {"schema_version": SCHEMA_VERSION, "kind": "gate", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        """Build a GateResult from its JSON form, every field checked."""
        return build(cls, data)


def load_gate_result(path: str | os.PathLike[str]) -> GateResult:
    """Return the GateResult saved at `path` (by `memdiag gate --json`)."""
    return load_model(path, "gate", GateResult.from_dict)
