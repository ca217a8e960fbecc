"""A node job that memdiag starts, with V8 heap snapshots at its end, near its heap's peak
(`--at-peak`) and near V8's heap limit (in memdiag; the snapshots themselves are written inside
node: by `snapshot_at_exit.js`, preloaded through NODE_OPTIONS, and by node's own
`--heapsnapshot-near-heap-limit`)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from memdiag.errors import MemdiagError
from memdiag.measure.node.inspector import is_node_name

PRELOAD = Path(__file__).with_name("snapshot_at_exit.js")


# node's own name for a snapshot near the heap limit: Heap.DATE.TIME.PID.THREAD.SEQ.heapsnapshot
_NEAR_LIMIT = re.compile(r"^Heap\.\d+\.\d+\.(\d+)\.\d+\.(\d+)\.heapsnapshot$")


@dataclass(frozen=True)
class JobHeapSnapshot:
    """How the job ended (`returncode`, negative for a signal) and the `.heapsnapshot`s it
    left: at its end (None when it wrote none: killed, out of heap, or not a node program),
    near its heap's peak (with `peak_path`; `peak_heap_live_bytes`: the heap live in it), and
    the one V8 wrote near its heap limit before dying there (moved to `near_limit_path`)."""

    returncode: int
    heapsnapshot: Path | None
    peak: Path | None = None
    peak_heap_live_bytes: int | None = None
    near_limit: Path | None = None


def is_node_command(argv: list[str]) -> bool:
    """True when the command's program is node (`node`, `nodejs`, `/usr/bin/node`)."""
    return bool(argv) and is_node_name(argv[0])


def node_options(existing: str | None) -> str:
    """Return NODE_OPTIONS with the end-of-job preload added after what the user set."""
    preload = f'--require "{PRELOAD}"' if " " in str(PRELOAD) else f"--require {PRELOAD}"
    return f"{existing} {preload}".strip() if existing else preload


def run_with_end_snapshot(
    argv: list[str],
    path: str | Path,
    timeout: float | None = None,
    peak_path: str | Path | None = None,
    near_limit_path: str | Path | None = None,
) -> JobHeapSnapshot:
    """Run `argv` to its end (its output passes through) and return how it ended and the heap
    snapshots it wrote: at its exit to `path`, near its heap's peak to `peak_path` (when
    given), and near V8's heap limit to `near_limit_path` (when given and the job got
    there); a timeout or Ctrl-C stops the job first."""
    target = _fresh(path)
    peak = _fresh(peak_path) if peak_path else None
    near = _fresh(near_limit_path) if near_limit_path else None
    options = node_options(os.environ.get("NODE_OPTIONS"))
    diagnostics = tempfile.mkdtemp(prefix="memdiag-node-") if near else None
    if diagnostics:
        # V8 raises its limit for the time of writing, once: the snapshot of a job that died
        # of heap exhaustion, which the end snapshot never sees.
        folder = f'"{diagnostics}"' if " " in diagnostics else diagnostics
        options += f" --heapsnapshot-near-heap-limit=1 --diagnostic-dir={folder}"
    env = {**os.environ, "NODE_OPTIONS": options, "MEMDIAG_HEAPSNAPSHOT": str(target)}
    if peak:
        env["MEMDIAG_HEAPSNAPSHOT_PEAK"] = str(peak)
    try:
        try:
            proc = subprocess.Popen(argv, env=env)
        except OSError as exc:
            raise MemdiagError(f"cannot start {shlex.join(argv)}: {exc.strerror}") from None
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM ends node without 'exit' handlers: no end snapshot
            returncode = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        kept_near = _keep_near_limit(Path(diagnostics), proc.pid, near) if diagnostics else None
    finally:
        if diagnostics:
            shutil.rmtree(diagnostics, ignore_errors=True)
    end = target if target.exists() else None
    peak_live = _heap_live(peak) if peak else None
    end_live = _heap_live(target) if peak else None
    if peak is None or not peak.exists() or (end and (end_live or 0) >= (peak_live or 0)):
        if peak is not None and end is not None:
            peak.unlink(missing_ok=True)  # it holds less than the end: the end is the top
        peak, peak_live = (end, end_live) if peak and end else (None, None)
    return JobHeapSnapshot(returncode, end, peak, peak_live, kept_near)


def _heap_live(snapshot: Path) -> int | None:
    """Return the heap live in `snapshot` as the preload read it (its SNAPSHOT.json, removed),
    None when it said nothing."""
    note = Path(f"{snapshot}.json")
    try:
        return int(json.loads(note.read_text())["heap_live_bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        note.unlink(missing_ok=True)


def _fresh(path: str | Path) -> Path:
    """Return `path` resolved, its folder made, a previous run's file there removed (it must
    not pass for this run's)."""
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    return target


def _keep_near_limit(folder: Path, pid: int, target: Path | None) -> Path | None:
    """Move the snapshot that node `pid` wrote near its heap limit in `folder` to `target`;
    return it (None when it wrote none, or its write was cut short by the job's death)."""
    written = sorted(
        (int(m.group(2)), entry)
        for entry in folder.iterdir()
        if (m := _NEAR_LIMIT.match(entry.name)) and int(m.group(1)) == pid
    )
    if not written or target is None:
        return None
    from memdiag.measure.node.heapsnapshot import is_heapsnapshot

    last = written[-1][1]
    if not is_heapsnapshot(last):
        return None
    shutil.move(str(last), target)
    return target
