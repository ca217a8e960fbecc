"""A series of V8 heap snapshots of one running node process, for `memdiag leaks`.

All snapshots go through ONE inspector session, opened before the first and closed after the
last (on success, failure and Ctrl-C): V8 numbers the objects anew when a session ends, so
ids match across snapshots only within one. Each snapshot is written to disk, summarised
(constructors, retainers), reduced to its objects' ids and retained sizes
(`analysis/nodeleaks.py`) and deleted unless it is to be kept: disk holds one file at a time.
The last snapshot's graph stays in memory until the owners are named.

The first Ctrl-C stops after the snapshot under way (at once while waiting for the next one);
a second one stops at once. Either way the inspector is closed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memdiag.errors import MemdiagError
from memdiag.measure.interrupt import StopOnInterrupt
from memdiag.measure.node.inspector import attach, is_node_executable, node_process
from memdiag.measure.node.pidsnapshot import rss_bytes

if TYPE_CHECKING:
    from memdiag.analysis.dominators import DominatorTree
    from memdiag.analysis.nodeleaks import ObjectSizes
    from memdiag.measure.node.heapsnapshot import HeapGraph
    from memdiag.model import Snapshot

START_TIMEOUT_S = 10.0
SIGUSR1_BIT = 1 << (signal.SIGUSR1 - 1)


@dataclass(frozen=True)
class SnapshotMemory:
    """A node process's RSS and V8's committed memory just before a snapshot and just after."""

    rss_before: int
    committed_before: int | None
    rss_after: int
    committed_after: int | None


@dataclass
class NodeSeries:
    """The snapshots taken (summaries and per-object sizes), the last one's graph and tree,
    whether Ctrl-C (`partial`) or the process's end (`ended`) cut the series short, and the
    `.heapsnapshot` files kept. `memory` has per snapshot the process's RSS and what V8
    had taken from the system (`process.memoryUsage()`: heap total plus external memory,
    None where the process did not say), read just before it and just after it."""

    snapshots: list[Snapshot] = field(default_factory=list)
    sizes: list[ObjectSizes] = field(default_factory=list)
    memory: list[SnapshotMemory] = field(default_factory=list)
    last: tuple[HeapGraph, DominatorTree] | None = None
    partial: bool = False
    ended: str | None = None
    kept: list[str] = field(default_factory=list)


def node_leak_series(
    pid: int,
    every: float,
    iterations: int,
    keep_dir: str | None = None,
    on_snapshot: Callable[[int, Snapshot], None] | None = None,
    timeout: float = 600.0,
) -> NodeSeries:
    """Take `iterations + 1` heap snapshots of node process `pid`, one every `every` seconds
    (start to start), through one inspector session; see the module docstring."""
    from memdiag.analysis.dominators import dominator_tree
    from memdiag.analysis.nodeleaks import object_sizes
    from memdiag.measure.node.heapsnapshot import read_heapsnapshot
    from memdiag.measure.node.summary import require_node_extra, snapshot_of_graph

    require_node_extra()
    proc = node_process(pid)
    series = NodeSeries()
    with (
        tempfile.TemporaryDirectory(prefix="memdiag-leaks-") as scratch,
        StopOnInterrupt("snapshot") as stop,
        attach(pid) as session,
    ):
        from memdiag.measure.node.inspector import take_heap_snapshot

        start = time.monotonic()
        for index in range(iterations + 1):
            if index and stop.requested.wait(max(start + index * every - time.monotonic(), 0)):
                series.partial = True
                break
            folder = Path(keep_dir) if keep_dir else Path(scratch)
            path = folder / f"snapshot-{index:03d}.heapsnapshot"
            before = rss_bytes(pid)
            try:
                committed = v8_committed(session)
                take_heap_snapshot(session, path, timeout)
                memory = SnapshotMemory(before, committed, rss_bytes(pid), v8_committed(session))
            except MemdiagError:
                if os.path.exists(f"/proc/{pid}") and not _zombie(pid):
                    raise
                series.ended = f"pid {pid} ended after {index} snapshots"
                break
            series.last = None  # the previous graph goes before the next one is read
            graph = read_heapsnapshot(path)
            tree = dominator_tree(graph)
            snap = snapshot_of_graph(graph, tree, label=f"snapshot {index}")
            snap.time_s, snap.target, snap.pid, snap.rss_bytes = (
                time.time(),
                proc.command,
                pid,
                before,
            )
            snap.heapsnapshot = str(path) if keep_dir else None
            series.snapshots.append(snap)
            series.memory.append(memory)
            series.sizes.append(object_sizes(graph, tree))
            series.last = (graph, tree)
            if keep_dir:
                series.kept.append(str(path))
            else:
                path.unlink()
            if on_snapshot is not None:
                on_snapshot(index, snap)
            if stop.requested.is_set():
                series.partial = index < iterations
                break
    return series


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except (OSError, IndexError):
        return True


def start_node(
    argv: list[str], timeout: float = START_TIMEOUT_S
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `argv` and return it with the pid of its node process (itself or a descendant)
    once node has taken over SIGUSR1 (before that, SIGUSR1 would end the process)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MemdiagError(
                f"{' '.join(argv)[:80]} exited with code {proc.returncode} before a snapshot",
                exit_code=1,
            )
        for pid in [proc.pid, *_descendants(proc.pid)]:
            if is_node_executable(pid) and _catches_sigusr1(pid):
                return proc, pid
        time.sleep(0.02)
    stop_process(proc)
    raise MemdiagError(f"{' '.join(argv)[:80]}: no node process within {timeout:g} s")


def _catches_sigusr1(pid: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & SIGUSR1_BIT)
    except (OSError, ValueError):
        pass
    return False


def _descendants(pid: int) -> list[int]:
    """Return the pids under `pid`, breadth first (from /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                text = Path(f"/proc/{current}/task/{task}/children").read_text()
            except OSError:
                continue
            children = [int(c) for c in text.split()]
            found += children
            todo += children
    return found


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End a process memdiag started: SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# What V8 has taken from the system: its heap's committed pages, and the memory outside the
# heap that node tells it of (Buffers and array buffers).
_MEMORY_USAGE = "(() => { const m = process.memoryUsage(); return m.heapTotal + m.external; })()"


def v8_committed(session: Any) -> int | None:
    """Return the node process's V8 heap total plus external memory, None if it cannot say
    (no `process` in its main context)."""
    try:
        answer = session.call(
            "Runtime.evaluate",
            {"expression": _MEMORY_USAGE, "returnByValue": True},
            deadline=time.monotonic() + 10.0,
        )
    except MemdiagError:
        return None
    value = answer.get("result", {}).get("value")
    return int(value) if isinstance(value, int | float) else None
