"""Small measured targets for the tests: spikes, failures, growth, phases."""

from __future__ import annotations

import os
import signal
import sys
import time

from memdiag import probe

MB = 1024 * 1024


def touch(size: int) -> bytearray:
    block = bytearray(size)
    block[::4096] = b"\x01" * len(range(0, size, 4096))
    return block


def spike(mb: int = 300, hold_s: float = 0.05) -> int:
    """Hold `mb` MB for `hold_s` seconds between two quiet periods."""
    time.sleep(0.3)
    block = touch(mb * MB)
    time.sleep(hold_s)
    del block
    time.sleep(0.3)
    return 1


def empty() -> None:
    pass


def fail() -> None:
    raise ValueError("bad record 17")


def nomem() -> None:
    raise MemoryError("cannot allocate")


def grow(mb: int = 4000) -> None:
    held = []
    for _ in range(mb):
        held.append(touch(MB))
        time.sleep(0.001)


def sleepy(s: float = 60) -> None:
    time.sleep(s)


def suicide() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def phases(records: int = 3000) -> None:
    """Two labelled phases, the second holding more; reports progress but returns nothing."""
    with probe.phase("fetch"):
        rows = [{"id": i, "payload": "x" * 100} for i in range(records)]
        time.sleep(0.3)
    with probe.phase("write"):
        extra = [touch(MB) for _ in range(50)]
        for i in range(records):
            probe.progress(i + 1, records)
        time.sleep(0.3)
    del rows, extra
    probe.records(records)


def heavy_modules() -> int:
    """Return how many of memdiag's own heavy dependencies the child has loaded."""
    heavy = ("click", "psutil", "rich", "matplotlib", "memray", "sqlalchemy", "jinja2")
    return sum(name in sys.modules for name in heavy)


def heap_block(mb: int = 80) -> int:
    block = bytes(mb * MB)
    time.sleep(0.2)
    return len(block) // MB
