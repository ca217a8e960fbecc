"""Shared fixtures: every test must leave no child process and no sampler thread behind.

Tests marked `postgres` need MEMDIAG_TEST_PG_URL (`.ci/postgres.sh` provides it): without
it they skip, except under CI=true, where they fail: CI must never pass without running them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

MB = 1024 * 1024

# A shell that starts the suite in the background (`pytest &`) hands it SIGINT ignored, and
# every memdiag the tests start would inherit that: the Ctrl-C tests would then wait for a
# stop that never comes. Python's own handler puts it back (children get the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") is None or os.environ.get("MEMDIAG_TEST_PG_URL"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(
            "MEMDIAG_TEST_PG_URL is not set under CI=true: .ci/run must start PostgreSQL "
            "(.ci/postgres.sh)",
            pytrace=False,
        )
    pytest.skip("MEMDIAG_TEST_PG_URL is not set (.ci/postgres.sh)")


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [
            p
            for p in psutil.Process().children(recursive=True)
            if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    samplers = [t for t in threading.enumerate() if t.name.startswith("memdiag-")]
    assert not left, f"processes left running: {[p.cmdline() for p in left]}"
    assert not samplers, f"threads left running: {samplers}"


def memdiag(
    *args: str, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the real `memdiag` CLI in a subprocess and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "memdiag", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
