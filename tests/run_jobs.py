"""Targets for how a run ends: paced growth under --limit, forked trees, lost results."""

from __future__ import annotations

import os
import signal
import time

MB = 1024 * 1024


def touch(size: int) -> bytearray:
    block = bytearray(size)
    block[::4096] = b"\x01" * len(range(0, size, 4096))
    return block


def paced(log: str, mb_per_s: float = 200, total_mb: int = 1000, fork: bool = False) -> None:
    """Touch 1 MB at a time, never faster than `mb_per_s` (a stalled job does not catch up
    in a burst), in a forked child with `fork`; append each MB's time to `log`."""
    if fork and os.fork():
        os.wait()
        return
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    held = []
    due = time.perf_counter()
    for _ in range(total_mb):
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        due = max(due, now) + 1 / mb_per_s
        held.append(touch(MB))
        os.write(out, b"%f\n" % time.perf_counter())
    os._exit(0)


def shared_tree(mb: int = 200, workers: int = 3, write: bool = False, hold_s: float = 1.5) -> int:
    """Touch `mb` MB, then fork `workers` that read it for `hold_s` (or write it: copies)."""
    block = touch(mb * MB)
    for _ in range(workers):
        if os.fork() == 0:
            end = time.monotonic() + hold_s
            while time.monotonic() < end:
                if write:
                    block[::4096] = b"\x02" * len(range(0, len(block), 4096))
                sum(block[::4096])
                time.sleep(0.05)
            os._exit(0)
    for _ in range(workers):
        os.wait()
    return workers


def no_result() -> None:
    """End the process at once: no result file, exit code 0."""
    os._exit(0)


def kill_launcher() -> None:
    """Kill memdiag's launcher (the parent), so that no result is written at all."""
    os.kill(os.getppid(), signal.SIGKILL)
    os._exit(0)


def orphaned(pids: str) -> None:
    """Start a child, write both pids to `pids`, then kill the launcher and stay: the job and
    its child are left without their launcher, reparented, for 60 s."""
    import json
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(pids + ".tmp", "w") as handle:
        json.dump([os.getpid(), child.pid], handle)
    os.replace(pids + ".tmp", pids)
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(60)
