"""pytest plugin: per-test memory limits, leak checks, and a per-test memory report.

    @pytest.mark.memdiag(max_peak="64MB")          fail when the test's peak passes 64 MB
    @pytest.mark.memdiag(leaks=True, iterations=5) run the body 5 times, fail on steady growth
    @pytest.mark.memdiag(leaks=True, max_peak="64MB")   both: the first run's peak, then leaks
    pytest --memdiag-report reports/pytest.json    per-test memory as JSON (a gate baseline)

Steady growth is memdiag's one leak rule (`memdiag.analysis.leaks`, docs/leaks.md), applied
to the live heap by allocation line after each run of the body; `min_growth` is its floor.

A test's peak is measured above where it started, twice: the Python heap (tracemalloc, its
peak reset before the test) and the process's RSS (its high-water mark reset through
`/proc/self/clear_refs` where Linux allows), so memory a C library allocates counts too. The
failure names the allocation sites at the heap's high-water mark (memray, only for tests
with a limit). Registered through the `pytest11` entry point; heavy imports happen in tests
that use the marker, never at collection.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memdiag.errors import MemdiagError
from memdiag.measure.python import selfmem
from memdiag.units import format_size, parse_size

if TYPE_CHECKING:
    from memdiag.analysis.leaks import LeakSettings

MARKER = "memdiag"
REPORT_KEY = pytest.StashKey[list[dict[str, Any]]]()


@dataclass
class TestMemory:
    """What one test took above its starting point, in bytes, and how long it ran."""

    rss_bytes: int | None = None
    heap_bytes: int | None = None
    wall_s: float = 0.0
    sites: list[selfmem.Site] = field(default_factory=list)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memdiag", "memory limits and leak checks (memdiag)")
    group.addoption(
        "--memdiag-report",
        metavar="PATH",
        default=None,
        help="write every test's peak memory as JSON to PATH (usable as a memdiag baseline)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "memdiag(max_peak=None, leaks=False, iterations=5, warmup=1, min_growth='64KB'): fail "
        "the test when its peak memory (Python heap or RSS growth) passes max_peak, or when "
        "leaks=True and memory grows steadily across repeated runs of its body (memdiag's "
        "leak rule, min_growth per run at least).",
    )
    config.stash[REPORT_KEY] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Check every memdiag marker before any test runs: a bad one is a usage error."""
    for item in items:
        marker = item.get_closest_marker(MARKER)
        if marker is not None:
            _marker_options(marker, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    marker = pyfuncitem.get_closest_marker(MARKER)
    reporting = pyfuncitem.config.getoption("--memdiag-report") is not None
    original = pyfuncitem.obj
    if (marker is None and not reporting) or inspect.iscoroutinefunction(original):
        yield
        return
    options = _marker_options(marker, pyfuncitem.nodeid) if marker else {}
    measured = TestMemory()
    pyfuncitem.obj = _wrap(original, options, measured)
    try:
        yield
    finally:
        pyfuncitem.obj = original
        if reporting:
            pyfuncitem.config.stash[REPORT_KEY].append(_report_entry(pyfuncitem, measured))


def _marker_options(marker: pytest.Mark, nodeid: str) -> dict[str, Any]:
    options = dict(marker.kwargs)
    unknown = set(options) - {"max_peak", "leaks", "iterations", "warmup", "min_growth"}
    if unknown or marker.args:
        raise pytest.UsageError(
            f"{nodeid}: memdiag marker takes max_peak, leaks, iterations, warmup, min_growth"
        )
    for name in ("max_peak", "min_growth"):
        if options.get(name) is not None:
            try:
                options[name] = parse_size(str(options[name]))
            except MemdiagError as exc:
                raise pytest.UsageError(f"{nodeid}: memdiag marker: {exc}") from None
    if options.get("leaks"):
        settings = _leak_settings(options)
        if int(options.get("iterations", 5)) < settings.min_intervals:
            raise pytest.UsageError(
                f"{nodeid}: memdiag leaks marker needs iterations >= {settings.min_intervals}"
            )
    return options


def _leak_settings(options: dict[str, Any]) -> LeakSettings:
    """Return the leak rule's thresholds for a marker: memdiag's defaults, its own warm-up."""
    from memdiag.analysis.leaks import LeakSettings

    growth = options.get("min_growth")
    defaults = LeakSettings()
    return LeakSettings(
        warmup=int(options.get("warmup", 1)),
        min_growth_bytes=defaults.min_growth_bytes if growth is None else growth,
    )


def _wrap(func: Callable[..., Any], options: dict[str, Any], measured: TestMemory) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if options.get("leaks"):
            return _check_leaks(func, args, kwargs, options, measured)
        return _measured_call(func, args, kwargs, options, measured)

    return wrapper


def _measured_call(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    measured: TestMemory,
) -> Any:
    """Call `func` measured; fail the test when its peak passes the marker's max_peak."""
    limit = options.get("max_peak")
    result = _measure(func, args, kwargs, measured, detailed=limit is not None)
    if limit is not None:
        _check_limit(measured, limit)
    return result


def _measure(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    measured: TestMemory,
    *,
    detailed: bool,
) -> Any:
    """Call `func` and record its RSS growth; `detailed` adds the heap peak and peak sites."""
    sites = selfmem.PeakSites()
    heap = selfmem.HeapPeak()
    try:
        with selfmem.heap_peak(enabled=detailed) as heap:
            rss_start = selfmem.reset_rss_peak()
            started = time.perf_counter()
            if detailed:
                sites.start()  # here, not in a context manager: see PeakSites
            try:
                return func(*args, **kwargs)
            finally:
                if detailed:
                    sites.stop()
                measured.wall_s = time.perf_counter() - started
                peak = selfmem.rss_peak()
                if rss_start is not None and peak is not None:
                    measured.rss_bytes = max(0, peak - rss_start)
                measured.sites = sites.sites
    finally:
        measured.heap_bytes = heap.peak_bytes


def _check_limit(measured: TestMemory, limit: int) -> None:
    figures = {"Python heap": measured.heap_bytes, "RSS growth": measured.rss_bytes}
    over = {name: value for name, value in figures.items() if value is not None and value > limit}
    if not over:
        return
    lines = [
        f"memdiag: peak memory over the limit of {format_size(limit)}: "
        + ", ".join(f"{name} {format_size(value)}" for name, value in figures.items())
    ]
    if measured.sites:
        lines.append("top allocation sites at the heap's peak:")
        lines += [f"  {format_size(s.size_bytes):>10}  {s.location}" for s in measured.sites]
    pytest.fail("\n".join(lines), pytrace=False)


def _check_leaks(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    measured: TestMemory,
) -> Any:
    """Run the body `warmup + iterations` times and fail on growth by the leak rule.

    The first run is measured as an unmarked-for-leaks test would be, so that `max_peak`
    holds for it too; the live heap is recorded after the last warm-up run (before the first
    run without warm-up) and after every later run.
    """
    from memdiag.analysis.leaks import site_leaks

    settings = _leak_settings(options)
    iterations = int(options.get("iterations", 5))
    result = None
    with selfmem.IterationTracker() as tracker:
        if settings.warmup == 0:
            tracker.record()
        for index in range(settings.warmup + iterations):
            if index == 0:
                result = _measured_call(func, args, kwargs, options, measured)
            else:
                result = func(*args, **kwargs)
            if index >= settings.warmup - 1:
                tracker.record()
    leaks = site_leaks(tracker.snapshots, settings)
    if leaks:
        lines = [
            f"memdiag: memory grew steadily over {iterations} runs of the test body "
            f"(at least {format_size(settings.min_growth_bytes)} per run):"
        ]
        lines += [
            f"  {leak.site}: +{format_size(leak.bytes_per_iteration)} per run "
            f"(+{leak.objects_per_iteration:.0f} blocks), grew in {leak.grew} of "
            f"{leak.intervals} runs"
            for leak in leaks
        ]
        pytest.fail("\n".join(lines), pytrace=False)
    return result


def _report_entry(item: pytest.Function, measured: TestMemory) -> dict[str, Any]:
    return {
        "params": {"test": item.nodeid},
        "peak_rss_bytes": measured.rss_bytes,
        "peak_heap_bytes": measured.heap_bytes,
        "wall_s": round(measured.wall_s, 4),
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--memdiag-report")
    if not path:
        return
    from memdiag.measure.process.env import collect_env
    from memdiag.model import SCHEMA_VERSION, write_json_atomic

    entries = session.config.stash[REPORT_KEY]
    data = {
        "schema_version": SCHEMA_VERSION,
        "kind": "pytest",
        "env": collect_env(),
        "configs": entries,
    }
    write_json_atomic(Path(path), data)
