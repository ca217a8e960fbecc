"""A V8 heap snapshot of a running node process, from memdiag: through its inspector.

While V8 builds and writes the snapshot the process stops running JavaScript (it answers no
request) and its RSS rises by the snapshot's working memory; both are measured here from
outside: the time the snapshot took and the highest RSS seen meanwhile (docs/node.md).
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memdiag.measure.node.inspector import attach, node_process, take_heap_snapshot

if TYPE_CHECKING:
    from memdiag.model import Snapshot


@dataclass(frozen=True)
class PidHeapSnapshot:
    """The summary of one snapshot, with what taking it cost the process: `snapshot_s` from
    the request to the last chunk, RSS before and the highest RSS sampled meanwhile."""

    snapshot: Snapshot
    file_bytes: int
    snapshot_s: float
    rss_before_bytes: int
    rss_peak_bytes: int
    kept: str | None


def rss_bytes(pid: int) -> int:
    """Return the resident set size of `pid` in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _RssWatch:
    """Samples the RSS of a pid every 20 ms in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> _RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_pid_heapsnapshot(pid: int, path: str | Path, timeout: float = 600.0) -> PidHeapSnapshot:
    """Write a heap snapshot of node process `pid` to `path` (the inspector opened and closed
    around it); the summary is not computed (`snapshot` is a bare Snapshot)."""
    from memdiag.model import Snapshot

    proc = node_process(pid)
    before = rss_bytes(pid)
    with attach(pid) as session, _RssWatch(pid) as watch:
        start = time.monotonic()
        size = take_heap_snapshot(session, path, timeout)
        elapsed = time.monotonic() - start
    snap = Snapshot(
        label=f"pid {pid}", time_s=time.time(), target=proc.command, pid=pid, rss_bytes=before
    )
    return PidHeapSnapshot(snap, size, elapsed, before, watch.peak, str(path))


def snapshot_node_pid(pid: int, keep: str | None = None, top: int = 20) -> PidHeapSnapshot:
    """Return the summarised heap snapshot of node process `pid` (constructors, retained sizes,
    retainers with paths); the `.heapsnapshot` is kept at `keep`, else removed."""
    from dataclasses import replace

    from memdiag.measure.node.summary import require_node_extra, snapshot_from_heapsnapshot

    require_node_extra()
    with tempfile.TemporaryDirectory(prefix="memdiag-heap-") as scratch:
        path = Path(keep) if keep else Path(scratch) / f"pid-{pid}.heapsnapshot"
        taken = write_pid_heapsnapshot(pid, path)
        summary = snapshot_from_heapsnapshot(str(path), label=f"pid {pid}", top=top)
        base = taken.snapshot
        snap = replace(
            summary,
            time_s=base.time_s,
            target=base.target,
            pid=pid,
            rss_bytes=base.rss_bytes,
            heapsnapshot=str(path) if keep else None,
        )
        return replace(taken, snapshot=snap, kept=str(path) if keep else None)
