"""pytest plugin: per-test memory limits, leak checks, and a per-test memory report.

    @pytest.mark.memdiag(max_peak="64MB")          fail when the test's peak passes 64 MB
    @pytest.mark.memdiag(leaks=True, iterations=5) run the body 5 times, fail on steady growth
    pytest --memdiag-report reports/pytest.json    per-test memory as JSON (a gate baseline)

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
from typing import Any

import pytest

from memdiag.errors import MemdiagError
from memdiag.measure import selfmem
from memdiag.units import format_size, parse_size

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
        "memdiag(max_peak=None, leaks=False, iterations=5, warmup=1): fail the test when its "
        "peak memory (Python heap or RSS growth) passes max_peak, or when leaks=True and "
        "memory grows steadily across repeated runs of its body.",
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
    unknown = set(options) - {"max_peak", "leaks", "iterations", "warmup"}
    if unknown or marker.args:
        raise pytest.UsageError(
            f"{nodeid}: memdiag marker takes max_peak, leaks, iterations, warmup"
        )
    if options.get("max_peak") is not None:
        try:
            options["max_peak"] = parse_size(str(options["max_peak"]))
        except MemdiagError as exc:
            raise pytest.UsageError(f"{nodeid}: memdiag marker: {exc}") from None
    return options


def _wrap(func: Callable[..., Any], options: dict[str, Any], measured: TestMemory) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if options.get("leaks"):
            return _check_leaks(func, args, kwargs, options)
        limit = options.get("max_peak")
        result = _measure(func, args, kwargs, measured, detailed=limit is not None)
        if limit is not None:
            _check_limit(measured, limit)
        return result

    return wrapper


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
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> Any:
    iterations = int(options.get("iterations", 5))
    warmup = int(options.get("warmup", 1))
    if iterations < 3:
        raise pytest.UsageError("memdiag leaks marker needs iterations >= 3")
    result = None
    with selfmem.IterationTracker() as tracker:
        for index in range(warmup + iterations):
            result = func(*args, **kwargs)
            if index >= warmup:
                tracker.record()
    growth = tracker.steady_growth()
    if growth:
        lines = [f"memdiag: memory grew in every one of {iterations} runs of the test body:"]
        lines += [f"  {g.describe()}" for g in growth]
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
    from memdiag.measure.env import collect_env
    from memdiag.model import SCHEMA_VERSION, write_json_atomic

    entries = session.config.stash[REPORT_KEY]
    data = {
        "schema_version": SCHEMA_VERSION,
        "kind": "pytest",
        "env": collect_env(),
        "configs": entries,
    }
    write_json_atomic(Path(path), data)
