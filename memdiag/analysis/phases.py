"""Where in a run the memory went: per-phase peaks and the growth over the baseline."""

from __future__ import annotations

from dataclasses import dataclass

from memdiag.model import Run


@dataclass(frozen=True)
class PhasePeak:
    """A phase's span in seconds since start and the highest sampled RSS within it."""

    phase: str
    start_s: float
    end_s: float
    peak_rss_bytes: int
    peak_heap_bytes: int | None


def phase_peaks(run: Run) -> list[PhasePeak]:
    """Return one entry per contiguous phase of the timeline, in order (unlabelled excluded)."""
    spans: list[PhasePeak] = []
    for sample in run.timeline:
        if sample.phase is None:
            continue
        last = spans[-1] if spans else None
        if last is not None and last.phase == sample.phase:
            heap = _max_optional(last.peak_heap_bytes, sample.heap_bytes)
            spans[-1] = PhasePeak(
                last.phase,
                last.start_s,
                sample.t_s,
                max(last.peak_rss_bytes, sample.rss_bytes),
                heap,
            )
        else:
            spans.append(
                PhasePeak(sample.phase, sample.t_s, sample.t_s, sample.rss_bytes, sample.heap_bytes)
            )
    return spans


def baseline_rss(run: Run) -> int | None:
    """Return the first non-zero sampled RSS in bytes: the job before its work began."""
    return next((s.rss_bytes for s in run.timeline if s.rss_bytes > 0), None)


def _max_optional(a: int | None, b: int | None) -> int | None:
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None
