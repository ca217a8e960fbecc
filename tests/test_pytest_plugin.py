"""The pytest plugin, tested with pytester in subprocesses: real allocations, real limits."""

from __future__ import annotations

import json
import re

import pytest

pytest_plugins = ["pytester"]

HEAP_HOG = """
import pytest

@pytest.mark.memdiag(max_peak="64MB")
def test_heap_hog():
    rows = [bytearray(1000) for _ in range(100_000)]  # ~100 MB of Python objects
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

@pytest.mark.memdiag(leaks=True, iterations=5)
def test_growing_cache():
    CACHE.append([str(i) * 10 for i in range(500)])

@functools.lru_cache(maxsize=32)
def lookup(key):
    return str(key) * 100

RUNS = [0]

@pytest.mark.memdiag(leaks=True, iterations=5)
def test_bounded_cache():
    RUNS[0] += 1
    for i in range(200):
        lookup((RUNS[0], i))
"""


def test_heap_over_the_limit_fails_and_names_the_site(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_heap=HEAP_HOG)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*memdiag: peak memory over the limit of 64.0 MB: Python heap 1*MB*",
            "*top allocation sites at the heap's peak:*",
            "*test_heap.py:5 (<listcomp>)*",
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


def test_leak_marker_catches_growth_and_passes_a_bounded_cache(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaks=LEAKS)
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_growing_cache FAILED*",
            "*memdiag: memory grew in every one of 5 runs of the test body:*",
            "*test_leaks.py:8: +* per run*",
        ]
    )
    assert "test_bounded_cache PASSED" in result.stdout.str()


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
