"""Shared fixtures: every test must leave no child process and no sampler thread behind.

A process left behind may no longer be a descendant of pytest (a job whose launcher was
killed is reparented to init or a subreaper): every process this session starts carries
SESSION_MARK in its environment (memdiag passes its environment on to its launchers and
jobs, the cluster tests to their scheduler and workers), so the check finds those too.

Tests marked `postgres` need MEMDIAG_TEST_PG_URL (`.ci/postgres.sh` provides it), tests
marked `pythons` MEMDIAG_TEST_PYTHONS (`.ci/pythons.sh`): without it they skip, except under
CI=true, where they fail: CI must never pass without running them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

MB = 1024 * 1024
SESSION_MARK = "MEMDIAG_TEST_SESSION"
os.environ[SESSION_MARK] = f"{os.getpid()}-{uuid.uuid4().hex}"

# A shell that starts the suite in the background (`pytest &`) hands it SIGINT ignored, and
# every memdiag the tests start would inherit that: the Ctrl-C tests would then wait for a
# stop that never comes. Python's own handler puts it back (children get the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# What a marked test needs: the variable that gives it, and what sets that variable.
NEEDS = {
    "postgres": ("MEMDIAG_TEST_PG_URL", "start PostgreSQL (.ci/postgres.sh)"),
    "pythons": ("MEMDIAG_TEST_PYTHONS", "unpack CPython 3.13 and 3.14 (.ci/pythons.sh)"),
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, (variable, how) in NEEDS.items():
        if item.get_closest_marker(marker) is None or os.environ.get(variable):
            continue
        if os.environ.get("CI") == "true":
            pytest.fail(f"{variable} is not set under CI=true: .ci/run must {how}", pytrace=False)
        pytest.skip(f"{variable} is not set: {how}")


def _marked_processes() -> set[psutil.Process]:
    """Every live process of this session: its environment carries SESSION_MARK's value."""
    mark = os.environ[SESSION_MARK].encode()
    found = set()
    for pid in psutil.pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if mark not in handle.read():
                    continue
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                found.add(process)
        except (OSError, psutil.Error):
            continue  # gone, or another user's
    return found


def leftover_processes(before: set[psutil.Process]) -> list[psutil.Process]:
    """Return the session's live processes that were not in `before`."""
    alive = []
    for p in session_processes() - before - {psutil.Process()}:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.Error:
            continue
    return alive


def session_processes() -> set[psutil.Process]:
    """Every live process of this session now: pytest's descendants and the marked ones."""
    return set(psutil.Process().children(recursive=True)) | _marked_processes()


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    before = session_processes()
    yield
    deadline = time.monotonic() + 5
    while (left := leftover_processes(before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    samplers = [t for t in threading.enumerate() if t.name.startswith("memdiag-")]
    if left:
        names = []
        for p in left:
            try:
                names.append(p.cmdline())
            except psutil.Error:
                continue
        for p in left:  # stopped by pid, so that one test's leftovers fail only that test
            try:
                p.kill()
            except psutil.Error:
                pass
        assert not names, f"processes left running: {names}"
    assert not samplers, f"threads left running: {samplers}"


def _gdb_broken() -> str | None:
    import shutil

    from memdiag.measure.attach.gdb import function_calls_broken

    gdb = shutil.which("gdb")
    return function_calls_broken(gdb) if gdb else None  # no gdb: the gdb tests fail


# On some machines gdb cannot call a function in a process (gdb 13 on a kernel and CPU whose
# XSAVE area it does not know: the call never runs, and the process's interrupted system call
# fails). There memdiag must refuse --inject and leave the process as it was; elsewhere it
# must get in. Each machine tests the one that applies to it; no gdb at all is a failure.
@pytest.fixture(scope="session")
def gdb_broken() -> str | None:
    """Whether gdb cannot call functions here (probed once, by the tests that need it)."""
    return _gdb_broken()


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


def leaks_json(
    *args: str, cwd: Path, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run `memdiag leaks --json OUT ARGS` in `cwd`; return the finished process and the
    report it saved."""
    out = cwd / "leaks.json"
    out.unlink(missing_ok=True)
    proc = memdiag("leaks", "--json", str(out), *args, cwd=cwd, timeout=timeout)
    assert out.exists(), proc.stdout + proc.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    return proc, report


def load_results(out: Path) -> dict[str, Any]:
    """Return the results.json a sweep saved in the folder `out`."""
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return data


def line_in(source: str, text: str) -> int:
    """Return the number (from 1) of the first line of `source` that contains `text`."""
    return next(i for i, line in enumerate(source.splitlines(), 1) if text in line)
