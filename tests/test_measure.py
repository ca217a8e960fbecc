"""The measured run as a library: the peak floor from a large parent."""

from __future__ import annotations

from pathlib import Path

from memdiag.measure.runner import RunOptions, measure_run
from memdiag.targets import parse_target
from tests.conftest import MB
from tests.jobs import touch

JOBS = str(Path(__file__).with_name("jobs.py"))


def test_peak_floor_from_a_parent_holding_300mb() -> None:
    # ru_maxrss is inherited across fork and exec: without the launcher, a 300 MB parent
    # would report ~310 MB for an empty job.
    ballast = touch(300 * MB)
    run = measure_run(parse_target(f"{JOBS}:empty"), {}, RunOptions())
    assert run.status == "ok"
    assert run.peak_rss_bytes < 40 * MB
    command = measure_run(parse_target(None, ["true"]), {}, RunOptions())
    assert command.peak_rss_bytes < 40 * MB
    del ballast


def test_sampled_timeline_is_relative_and_ordered() -> None:
    run = measure_run(parse_target(f"{JOBS}:spike"), {"mb": 50, "hold_s": 0.3}, RunOptions(0.05))
    times = [s.t_s for s in run.timeline]
    assert times == sorted(times) and times[0] < 0.2
    assert max(s.rss_bytes for s in run.timeline) >= 50 * MB
    assert run.peak_rss_bytes >= max(s.rss_bytes for s in run.timeline)
