"""The pytest plugin, tested with pytester in subprocesses: real allocations, real limits."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import line_in

pytest_plugins = ["pytester"]


def line_of(source: str, text: str) -> int:
    """Return the line number of `text` in `source` as pytester writes it (stripped)."""
    return line_in(source.strip(), text)


# No comprehension allocates in the measured bodies: Python 3.11 runs one in a frame of its
# own (`<listcomp>`), 3.12 and later inline it (PEP 709), and the site must read the same.
HEAP_HOG = """
import pytest

@pytest.mark.memdiag(max_peak="64MB")
def test_heap_hog():
    rows = []
    for _ in range(100_000):
        rows.append(bytearray(1000))  # ~100 MB of Python objects
    assert len(rows) == 100_000

@pytest.mark.memdiag(max_peak="64MB")
def test_small():
    rows = [bytearray(1000) for _ in range(10_000)]  # ~10 MB
    assert rows
"""

NATIVE_HOG = """
import ctypes
import pytest

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

@pytest.mark.memdiag(max_peak="64MB")
def test_native_hog():
    size = 100 * 1024 * 1024
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)  # touched: resident, and invisible to tracemalloc
    libc.free(block)
"""

LEAKS = """
import functools
import pytest

CACHE = []
BUFFER = bytearray()
PAUSING = []
SMALL = []
RUNS = [0]

@pytest.mark.memdiag(leaks=True, iterations=5)
def test_growing_cache():
    for i in range(2000):
        CACHE.append(str(i) * 10)

@pytest.mark.memdiag(leaks=True, iterations=5)
def test_one_growing_buffer():
    BUFFER.extend(bytes(1024 * 1024))

@pytest.mark.memdiag(leaks=True, iterations=5)
def test_growth_that_pauses_once():
    RUNS[0] += 1
    if RUNS[0] != 4:
        PAUSING.append(bytes(200_000))

@pytest.mark.memdiag(leaks=True, iterations=5)
def test_growth_below_the_floor():
    SMALL.append(bytes(16_000))

@pytest.mark.memdiag(leaks=True, iterations=5, min_growth="8KB")
def test_growth_above_a_lower_floor():
    SMALL.append(bytes(16_000))

@functools.lru_cache(maxsize=32)
def lookup(key):
    return str(key) * 100

@pytest.mark.memdiag(leaks=True, iterations=5)
def test_bounded_cache():
    RUNS[0] += 1
    for i in range(200):
        lookup((RUNS[0], i))
"""

# Both options of one marker: the peak of the body's first run, then the leak check.
PEAK_AND_LEAKS = """
import pytest

KEPT = []

@pytest.mark.memdiag(leaks=True, max_peak="32MB")
def test_peak_over_no_leak():
    rows = []
    for _ in range(60_000):
        rows.append(bytearray(1000))

@pytest.mark.memdiag(leaks=True, max_peak="32MB")
def test_leak_under_the_peak():
    KEPT.append(bytes(500_000))

@pytest.mark.memdiag(leaks=True, max_peak="32MB")
def test_neither():
    rows = [bytes(1000)] * 1000
    assert rows
"""

# The fixed variant of a reference engine, called again and again with fresh input:
# SQLAlchemy's statement caches and the engine's imports warm up, nothing is kept.
ENGINE_FIXED = """
import pytest
from memdiag_plugins import import_job, record_sync

SEED = [0]

@pytest.mark.memdiag(leaks=True, iterations=6, warmup=2)
def test_import_stream():
    SEED[0] += 1
    import_job.run(variant="stream", records=10, seed=SEED[0])

@pytest.mark.memdiag(leaks=True, iterations=6, warmup=2)
def test_record_sync_cleared():
    SEED[0] += 1
    record_sync.run(variant="cleared", cycles=10, batch=100, seed=SEED[0])
"""


def test_heap_over_the_limit_fails_and_names_the_site(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_heap=HEAP_HOG)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*memdiag: peak memory over the limit of 64.0 MB: Python heap 1*MB*",
            "*top allocation sites at the heap's peak:*",
            f"*test_heap.py:{line_of(HEAP_HOG, 'rows.append')} (test_heap_hog)*",
        ]
    )


def test_native_memory_counts_through_rss(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_native=NATIVE_HOG)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    line = next(x for x in result.outlines if x.startswith("memdiag: peak memory over"))
    rss = float(re.search(r"RSS growth ([\d.]+) MB", line).group(1))  # type: ignore[union-attr]
    heap = float(re.search(r"Python heap ([\d.]+) MB", line).group(1))  # type: ignore[union-attr]
    assert rss >= 90 and heap < 64


def test_leak_marker_follows_the_leak_rule(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaks=LEAKS)
    result = pytester.runpytest_subprocess("-v")
    outcomes = {
        name: outcome
        for name, outcome in re.findall(r"::(test_\w+) (PASSED|FAILED)", result.stdout.str())
    }
    assert outcomes == {
        "test_growing_cache": "FAILED",
        "test_one_growing_buffer": "FAILED",  # one object, no new one per run
        "test_growth_that_pauses_once": "FAILED",  # grew in 4 of 5 runs: nearly every
        "test_growth_below_the_floor": "PASSED",  # 16 KB a run, under the 64 KB default
        "test_growth_above_a_lower_floor": "FAILED",
        "test_bounded_cache": "PASSED",
    }
    result.stdout.fnmatch_lines(
        [
            "*memdiag: memory grew steadily over 5 runs of the test body (at least 64*KB per run)*",
            f"*test_leaks.py:{line_of(LEAKS, 'BUFFER.extend')}: +1.0 MB per run (+0 blocks), "
            "grew in 5 of 5 runs*",
        ]
    )
    pausing = line_of(LEAKS, "PAUSING.append")
    result.stdout.fnmatch_lines([f"*test_leaks.py:{pausing}: +* per run*grew in 4 of 5 runs*"])


def test_leaks_and_max_peak_are_both_checked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_both=PEAK_AND_LEAKS)
    report = pytester.path / "mem.json"
    result = pytester.runpytest_subprocess("-v", f"--memdiag-report={report}")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "test_peak_over_no_leak FAILED" in out and "test_leak_under_the_peak FAILED" in out
    result.stdout.fnmatch_lines(["*memdiag: peak memory over the limit of 32.0 MB*"])
    result.stdout.fnmatch_lines(["*memdiag: memory grew steadily over 5 runs*"])
    peaks = {c["params"]["test"]: c for c in json.loads(report.read_text())["configs"]}
    assert peaks["test_both.py::test_peak_over_no_leak"]["peak_heap_bytes"] > 50 * 2**20
    assert peaks["test_both.py::test_neither"]["peak_heap_bytes"] < 8 * 2**20


@pytest.mark.slow
def test_engines_fixed_variants_raise_no_alarm(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_engines=ENGINE_FIXED)
    for _ in range(3):
        result = pytester.runpytest_subprocess("-v")
        result.assert_outcomes(passed=2)


def test_report_lists_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_heap=HEAP_HOG)
    report = pytester.path / "mem.json"
    pytester.runpytest_subprocess(f"--memdiag-report={report}")
    data = json.loads(report.read_text())
    assert data["kind"] == "pytest" and data["schema_version"] == 1
    by_test = {c["params"]["test"]: c for c in data["configs"]}
    assert set(by_test) == {"test_heap.py::test_heap_hog", "test_heap.py::test_small"}
    assert by_test["test_heap.py::test_heap_hog"]["peak_heap_bytes"] > 64 * 1024 * 1024
    assert by_test["test_heap.py::test_small"]["peak_rss_bytes"] is not None


def test_bad_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n@pytest.mark.memdiag(max_peak='12XB')\ndef test_x():\n    pass\n"
    )
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*memdiag marker: not a size: '12XB'*"])
