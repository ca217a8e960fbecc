"""Shared fixtures: every test must leave no child process and no sampler thread behind."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

MB = 1024 * 1024


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
