"""What a monitor saw, summarised: the `summary` line of a monitor's samples.jsonl.

The samples file itself (header, samples, events, summary) is read by
measure/monitor/file.py; this is the summary's shape, in bytes, seconds and percent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from memdiag.model.schema import build


@dataclass(frozen=True)
class MonitorHeader:
    """The first line of samples.jsonl: what was followed, the thresholds (%) and the limit."""

    target: str = "?"
    warn: float = 75.0
    critical: float = 85.0
    limit_bytes: int | None = None
    interval_s: float | None = None


@dataclass(frozen=True)
class MonitorEvent:
    """An event line of samples.jsonl: a threshold crossed (or a GC run) at `t_s`."""

    t_s: float
    event: str
    percent: float
    level: str | None = None


@dataclass(frozen=True)
class MonitorEnd:
    """What the summary line of samples.jsonl says of the end: how and with which code."""

    ended: str = "unknown"
    exit_code: int | None = None


# The trend's verdict (analysis/trend.py decides it).
Verdict = Literal["stable", "growing", "sawtooth", "unknown"]


@dataclass(frozen=True)
class MonitorSummary:
    """What a monitor saw, in bytes, seconds and percent of `limit_bytes`."""

    samples: int
    duration_s: float
    min_rss_bytes: int
    mean_rss_bytes: int
    max_rss_bytes: int
    last_rss_bytes: int
    max_percent: float
    limit_bytes: int
    verdict: Verdict
    growth_mb_per_hour: float
    r2: float
    intercept_bytes: float
    fit_from_s: float
    releases: int
    period_s: float | None
    trough_growth_mb_per_hour: float | None
    warn: float
    critical: float
    above_warn_s: float
    above_critical_s: float
    max_uss_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorSummary:
        """Build a MonitorSummary from its JSON form (other fields, such as `ended`, left out)."""
        return build(cls, data)
