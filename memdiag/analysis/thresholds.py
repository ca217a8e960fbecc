"""Warning and critical levels of memory use, and the events of crossing them.

Shared by `memdiag monitor` and the in-process `MemoryMonitor`, so both say "critical" at
the same moment. Percentages are of a limit, 0-100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from memdiag.errors import MemdiagError

Level = Literal["ok", "warning", "critical"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "critical")

# Going back below a threshold needs this many points of margin: a process hovering at
# 75.0% would otherwise log a warning and a recovery on every sample.
HYSTERESIS_POINTS = 1.0


@dataclass(frozen=True)
class Crossing:
    """A change of level: `event` is `warning`, `critical` or `recovered`."""

    event: str
    level: Level
    previous: Level
    percent: float


def check_thresholds(warning: float, critical: float) -> None:
    """Raise a MemdiagError unless 0 < warning < critical <= 100 (percent)."""
    if not 0 < warning < critical <= 100:
        raise MemdiagError(
            f"thresholds must satisfy 0 < warn < critical <= 100, got warn {warning:g}% "
            f"and critical {critical:g}%"
        )


class ThresholdTracker:
    """Follows a series of percentages and reports each change of level once."""

    def __init__(self, warning: float, critical: float) -> None:
        check_thresholds(warning, critical)
        self.warning, self.critical = warning, critical
        self.level: Level = "ok"

    def level_of(self, percent: float) -> Level:
        """Return the level `percent` stands at, given the current level (hysteresis)."""
        margin = HYSTERESIS_POINTS
        critical_at = self.critical - (margin if self.level == "critical" else 0)
        warning_at = self.warning - (margin if self.level != "ok" else 0)
        if percent >= critical_at:
            return "critical"
        return "warning" if percent >= warning_at else "ok"

    def update(self, percent: float) -> Crossing | None:
        """Record a new percentage; return the Crossing when the level changed, else None."""
        new = self.level_of(percent)
        if new == self.level:
            return None
        previous, self.level = self.level, new
        rising = LEVELS.index(new) > LEVELS.index(previous)
        return Crossing(new if rising else "recovered", new, previous, percent)
