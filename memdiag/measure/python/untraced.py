"""Traces one call with tracemalloc, in slices when tracing it whole costs too much, and
lets a forked copy of the traced process allocate untraced with the traces kept.

`memdiag leaks` traces its last call only (`memdiag.measure.python.tracked.run_leaks`).
tracemalloc at one frame costs about 1 µs an allocation: 10 to 15 times a call that does
little else. `Tracer` traces the call whole for `full_s` seconds, then switches the object
and memory domains between tracemalloc's hooks (`ON_S` seconds) and hooks that allocate and
reallocate untraced but still let tracemalloc forget what is freed (`OFF_S` seconds). A block
is then traced when its last allocation, malloc or realloc, ran traced: whichever way an
object is made (a %-formatted string is finished by a realloc, an f-string is not), it is
traced at the same share, and the traces left after the call are a sample of what it kept,
each with its true allocating line. (A traced block that an untraced realloc moves leaves its
trace at the old address until that address is traced or freed again: a block allocated
there untraced meanwhile reads as traced, at the moved block's line. That is at most one
block per traced block so moved; tracemalloc's own realloc in the untraced hooks added a
trace to every block a realloc finished, so all of those were always traced.) The
raw domain stays traced throughout: pymalloc hands every allocation over 512 bytes to it,
so large blocks are traced whole. The switch runs with the GIL held, as every allocation
in those two domains does, and only over CPython's own allocators (which take no context;
not over debug hooks nor another tool's).

The analysis after the call runs in a forked copy that asks tracemalloc which objects the
call allocated. `Tracer.restore` (in the copy) puts the interpreter's allocators back: the
copy allocates at full speed and untraced, while tracemalloc's traces, and the tracebacks
it answers from them, stay as the call left them (the copy frees none of the objects it
asks about: no hook would remove their traces).

Everything the tracer allocates is made in `Tracer()`, before the first snapshot: none of
it is counted as the call's growth. Public C API (`PyMem_GetAllocator`,
`PyMem_SetAllocator`) through ctypes. Where the compiled loops were built (`_heapwalk`),
`Tracer.log_frees` wraps the object allocator, before the traced call, with a log of the
blocks freed, which the tracer's hooks then call in turn.
"""

from __future__ import annotations

import array
import ctypes
import os
import threading
import time
import tracemalloc
from collections.abc import Iterable

# PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ; the two switched in slices.
DOMAINS = (0, 1, 2)
SLICED = (1, 2)


class Allocator(ctypes.Structure):
    """`PyMemAllocatorEx`: a context and the four allocation functions."""

    _fields_ = [
        ("ctx", ctypes.c_void_p),
        ("malloc", ctypes.c_void_p),
        ("calloc", ctypes.c_void_p),
        ("realloc", ctypes.c_void_p),
        ("free", ctypes.c_void_p),
    ]


class Tracer:
    """tracemalloc for one call: whole for `full_s` seconds, then in slices (see above)."""

    ON_S = 0.005
    OFF_S = 0.045

    def __init__(self) -> None:
        self._get = ctypes.pythonapi.PyMem_GetAllocator
        self._get.argtypes, self._get.restype = [ctypes.c_int, ctypes.POINTER(Allocator)], None
        self._put = ctypes.pythonapi.PyMem_SetAllocator
        self._put.argtypes, self._put.restype = [ctypes.c_int, ctypes.POINTER(Allocator)], None
        self.saved = [Allocator() for _ in DOMAINS]  # the interpreter's, before tracing
        self.traced = [Allocator() for _ in DOMAINS]  # tracemalloc's hooks
        self.untraced = [Allocator() for _ in DOMAINS]  # allocate untraced, free traced
        for domain in DOMAINS:
            self._get(domain, ctypes.byref(self.saved[domain]))
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._slice, name="memdiag-tracer", daemon=True)
        self.full_s = 0.0
        self.started = 0.0
        self.sliced_from = 0.0

    def log_frees(self) -> bool:
        """Wrap the object allocator with the log of the blocks it frees, and start it (before
        the untracked objects `owners.new_since` reads are listed, before `start`): an old
        address whose block was not freed since is its old object, and tracemalloc need not
        be asked about it (2.2 million such questions were half the owners' time at 2.4
        million objects). The tracer's allocators are read again: the wrapper is under its
        hooks and its untraced slices, so every free is seen. Only the traced call runs
        wrapped. Return whether it started: not where the compiled loops were not built,
        nor over hooks that take a context."""
        try:
            from memdiag.measure.python import _heapwalk
        except ImportError:
            return False
        if not _heapwalk.install_free_log():
            return False
        for domain in DOMAINS:  # into the structures made in __init__: nothing allocated
            self._get(domain, ctypes.byref(self.saved[domain]))
        return bool(_heapwalk.log_frees())

    def can_slice(self) -> bool:
        """Return whether the interpreter's allocators take no context (CPython's own):
        their functions may then run with tracemalloc's context."""
        return all(allocator.ctx is None for allocator in self.saved)

    def why_whole(self) -> str | None:
        """Return why the call cannot be traced in slices (the allocators in the way), None
        when it can."""
        if self.can_slice():
            return None
        import sys

        if os.environ.get("PYTHONMALLOC", "").endswith("debug"):
            return f"PYTHONMALLOC={os.environ['PYTHONMALLOC']}"
        if sys.flags.dev_mode:
            return "-X dev (the allocators' debug hooks)"
        return "another tool's allocator hooks"

    def start(self, frames: int, full_s: float | None) -> None:
        """Start tracemalloc with `frames` frames; after `full_s` seconds (None: never),
        trace in slices until `stop`."""
        tracemalloc.start(frames)
        self.started = time.perf_counter()
        if full_s is None or not self.can_slice():
            return
        for domain in SLICED:
            traced, untraced = self.traced[domain], self.untraced[domain]
            self._get(domain, ctypes.byref(traced))
            untraced.ctx, untraced.free = traced.ctx, traced.free
            untraced.malloc = self.saved[domain].malloc
            untraced.calloc = self.saved[domain].calloc
            untraced.realloc = self.saved[domain].realloc
        self.full_s = full_s
        self.thread.start()

    def _slice(self) -> None:
        if self.done.wait(self.full_s):
            return
        self.sliced_from = time.perf_counter()
        try:
            while True:
                self._switch(self.untraced)
                if self.done.wait(self.OFF_S):
                    return
                self._switch(self.traced)
                if self.done.wait(self.ON_S):
                    return
        finally:
            self._switch(self.traced)

    def _switch(self, allocators: list[Allocator]) -> None:
        for domain in SLICED:
            self._put(domain, ctypes.byref(allocators[domain]))

    def stop(self) -> float | None:
        """Stop slicing (tracemalloc stays on, whole); return the share of the call's time
        traced when it went to slices, None when it was traced whole."""
        self.done.set()
        if self.thread.ident is not None:
            self.thread.join()
        if not self.sliced_from:
            return None
        ended = time.perf_counter()
        on = (ended - self.sliced_from) * self.ON_S / (self.ON_S + self.OFF_S)
        return round((self.sliced_from - self.started + on) / (ended - self.started), 3)

    def restore(self) -> None:
        """Put the interpreter's allocators back (in a forked copy, tracemalloc on): no
        allocation from now on is traced, and tracemalloc's traces are left as they are."""
        for domain in DOMAINS:
            self._put(domain, ctypes.byref(self.saved[domain]))


def write_ids(path: str, ids: Iterable[int]) -> None:
    """Write `ids` sorted, as native unsigned 64-bit integers, atomically."""
    write_id_bytes(path, array.array("Q", sorted(ids)).tobytes())


def write_id_bytes(path: str, ids: bytes) -> None:
    """Write `ids`, already sorted native unsigned 64-bit integers, atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as out:
        out.write(ids)
    os.replace(tmp, path)


def read_ids(path: str) -> array.array[int]:
    """Return the sorted ids `write_ids` wrote (empty when there is no such file)."""
    values = array.array("Q")
    if os.path.exists(path):
        with open(path, "rb") as source:
            values.frombytes(source.read())
    return values
