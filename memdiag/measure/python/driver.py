"""Snapshot series of a target: before/after one call, per iteration, or per interval.

Python targets run in `memdiag.measure.python.tracked` behind the same launcher as
`memdiag run` (so the run's own figures stay exact); external commands are sampled from
outside, their RSS every interval. Every function returns the Run and the snapshots.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memdiag.analysis.leaks import LeakSettings, attribution_request
from memdiag.errors import MemdiagError
from memdiag.measure.interrupt import StopOnInterrupt
from memdiag.measure.process.heap import HeapCapture
from memdiag.measure.process.runner import MeasurementInterrupted, RunOptions, measure_run
from memdiag.measure.python import tracked as child_tracked
from memdiag.model import Run, Snapshot, load_json, load_snapshot, write_json_atomic
from memdiag.targets import Target


@dataclass(frozen=True)
class LeakPlan:
    """How to look for leaks: calls (or intervals), settings, and what to keep."""

    iterations: int = 10
    every: float | None = None
    frames: int = 8
    vary: str | None = None
    settings: LeakSettings = field(default_factory=LeakSettings)
    keep_dir: str | None = None
    timeout: float | None = None


@dataclass
class Series:
    """A measured run, its snapshots in order, and what the child found in the live process.

    `partial` when Ctrl-C stopped the iterations early (the snapshots taken are kept);
    `peak`, for `memdiag snapshot`, the heap's high-water mark and what was live there;
    `notes`, what memdiag changed in the job's environment, and why.
    """

    run: Run
    snapshots: list[Snapshot]
    evidence: dict[str, Any]
    partial: bool = False
    peak: HeapCapture | None = None
    notes: list[str] = field(default_factory=list)


# Left out of the child's environment: memdiag decides what it traces, and when.
# PYTHONTRACEMALLOC would trace every call from start-up, the untraced ones too.
UNSET_ENV = ("PYTHONTRACEMALLOC",)


def env_notes() -> list[str]:
    """Return a line for each variable of UNSET_ENV set here, which the child will not get."""
    return [
        f"{name}={os.environ[name]} is not passed to the job: memdiag starts tracemalloc "
        "itself, for the calls it traces"
        for name in UNSET_ENV
        if name in os.environ
    ]


OnSnapshot = Callable[[Snapshot], None]


def _measure(target: Target, params: dict[str, Any], options: RunOptions) -> Run:
    try:
        return measure_run(target, params, options)
    except MeasurementInterrupted as stopped:
        return stopped.run


def snapshot_target(
    target: Target,
    params: dict[str, Any],
    out_dir: str | Path,
    frames: int = 8,
    at_phase: bool = False,
    memray_path: str | None = None,
    native: bool = False,
) -> Series:
    """Run `target` once; return the snapshots written to `out_dir` (before, phases, after)."""
    if not target.is_python:
        raise MemdiagError("snapshot of an external command: use --pid, or memdiag leaks --every")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("phase-*.json"), out / "before.json", out / "after.json"]:
        old.unlink(missing_ok=True)  # a previous run's phases must not mix with this one's
    # memray's capture of the call gives what was live at the peak, and the sites still
    # live after it; tracemalloc (5-30x) only for the phase snapshots, which need its sites.
    # With --memray the run's full capture is that capture: memray runs one at a time.
    peak_path = memray_path or str(out / "peak.memray")
    extra = {
        "mode": "snapshot",
        "out": str(out),
        "frames": frames,
        "at_phase": at_phase,
        "tracemalloc": at_phase,
        "peak_path": None if memray_path else peak_path,
    }
    early = _EarlyPeak(peak_path, at_end=not at_phase)
    try:
        run = _measure(target, params, _options(target, extra, memray_path, native))
    finally:
        peak = early.result()
    names = ["before.json", *sorted(p.name for p in out.glob("phase-*.json")), "after.json"]
    snaps = [load_snapshot(out / name) for name in names if (out / name).exists()]
    if peak is not None and snaps and snaps[-1].label == "after":
        _add_peak(snaps, peak, frames, from_memray=not at_phase)
        for name, snap in (("before.json", snaps[0]), ("after.json", snaps[-1])):
            write_json_atomic(out / name, snap.to_dict())
    if not memray_path:
        Path(peak_path).unlink(missing_ok=True)
    return Series(run, snaps, {}, peak=peak, notes=env_notes())


class _EarlyPeak:
    """`_read_peak` of the child's capture as soon as the child says it is whole (the
    CAPTURED file beside it), on a thread while the child takes its last snapshot and
    exits; or, when it never says so (killed, or a capture memdiag did not start), after."""

    def __init__(self, capture: str, at_end: bool) -> None:
        self.capture, self.at_end = capture, at_end
        self.marker = Path(f"{capture}{child_tracked.CAPTURED}")
        self.marker.unlink(missing_ok=True)
        self.done = threading.Event()
        self.peak: HeapCapture | None = None
        self.read = False
        self.thread = threading.Thread(target=self._watch, name="memdiag-peak", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(0.02):
            if self.marker.exists():
                self.peak, self.read = _read_peak(self.capture, self.at_end), True
                return

    def result(self) -> HeapCapture | None:
        """Return the peak read (the child has exited): early, or now."""
        self.done.set()
        self.thread.join()
        self.marker.unlink(missing_ok=True)
        return self.peak if self.read else _read_peak(self.capture, self.at_end)


def _read_peak(capture: str, at_end: bool = False) -> HeapCapture | None:
    """Return the peak of memray's capture of the call (with `at_end`, what was live at its
    end too, in the same read); None when there is none to read."""
    from memdiag.measure.process.heap import read_capture

    try:
        heap = read_capture(capture, at_end=at_end)
    except Exception:  # a capture cut short (the job killed at --timeout) may not be readable
        return None
    return heap if heap.peak_bytes is not None else None


def _add_peak(snaps: list[Snapshot], heap: HeapCapture, frames: int, from_memray: bool) -> None:
    """Fill the last snapshot's peak from memray's capture of the call; without tracemalloc,
    its sites too (what the call allocated and still held: the capture read `at_end`), and
    the first one's heap as 0."""
    from memdiag.model.snapshot import PeakSite, SiteStat

    after = snaps[-1]
    after.peak_heap_bytes = heap.peak_bytes
    after.at_peak = [PeakSite(**row) for row in heap.at_peak]
    if not from_memray:
        return
    rows, total = heap.at_end, heap.at_end_bytes
    after.sites = [
        SiteStat(_up_to_site(r["traceback"], r["site"])[-frames:], r["size_bytes"], r["count"])
        for r in rows
    ]
    after.heap_bytes, snaps[0].heap_bytes = total, 0


def _up_to_site(traceback: list[list[Any]], site: str) -> list[list[Any]]:
    """Return `traceback` (oldest frame first) ending at the job's frame `site`."""
    for index in range(len(traceback) - 1, -1, -1):
        filename, line = traceback[index]
        if f"{filename}:{line}" == site:
            return traceback[: index + 1]
    return traceback


def leak_series(
    target: Target, params: dict[str, Any], plan: LeakPlan, on_snapshot: OnSnapshot | None = None
) -> Series:
    """Return the snapshots after each iteration (or interval) and the child's evidence.

    `on_snapshot` is called with each snapshot as the child writes it. The first Ctrl-C
    stops the iterations after the current one (the series is then `partial`); a second
    one stops the child at once.
    """
    if not target.is_python:
        return _command_series(target, params, plan)
    work = Path(plan.keep_dir or tempfile.mkdtemp(prefix="memdiag-leaks-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("iter-*.json"):
        old.unlink()
    for name in (child_tracked.STOP_FILE, child_tracked.DONE_FILE, child_tracked.REQUEST_FILE):
        (work / name).unlink(missing_ok=True)
    extra = {
        "mode": "every" if plan.every else "leaks",
        "out": str(work),
        "frames": plan.frames,
        "iterations": plan.iterations,
        "every": plan.every,
        "vary": plan.vary,
        "target": target.text,
    }
    watcher = SnapshotWatcher(work, on_snapshot)
    requester = AttributionRequester(work, plan.settings)
    # Per call, the child can stop between two calls; with --every there is one call, which
    # Ctrl-C stops at once (the snapshots taken are kept either way).
    stop_file = work / child_tracked.STOP_FILE
    interrupt = StopOnInterrupt(
        "iteration", lambda: stop_file.write_text("stop\n"), enabled=not plan.every
    )
    try:
        with watcher, requester, interrupt:
            run = _measure(target, params, _options(target, extra, timeout=plan.timeout))
        snaps = [load_snapshot(p) for p in sorted(work.glob("iter-*.json"))]
        evidence_path = work / "evidence.json"
        evidence = load_json(evidence_path, ("evidence",)) if evidence_path.exists() else {}
        timings = evidence.setdefault("timings", {})
        timings.update(request=requester.elapsed_s, child=run.wall_s)
    finally:
        if plan.keep_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    stopped = interrupt.requested.is_set() or (plan.every is not None and run.status == "killed")
    return Series(run, snaps, evidence, partial=stopped, notes=env_notes())


class SnapshotWatcher:
    """Calls `on_snapshot` with each `iter-*.json` the child writes into `work`, in order,
    from a thread that polls the directory (the child writes each file atomically)."""

    def __init__(self, work: Path, on_snapshot: OnSnapshot | None, every_s: float = 0.25):
        self.work, self.on_snapshot, self.every_s = work, on_snapshot, every_s
        self.seen: set[str] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="snapshot-watcher", daemon=True)

    def __enter__(self) -> SnapshotWatcher:
        if self.on_snapshot is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
            self._scan()  # the last snapshots, written after the last poll

    def _poll(self) -> None:
        while not self.done.wait(self.every_s):
            self._scan()

    def _scan(self) -> None:
        assert self.on_snapshot is not None
        for path in sorted(self.work.glob("iter-*.json")):
            if path.name in self.seen:
                continue
            self.seen.add(path.name)
            try:
                self.on_snapshot(load_snapshot(path))
            except MemdiagError:
                self.seen.discard(path.name)  # read as it was replaced: next poll


class AttributionRequester:
    """Answers the tracked child once its snapshots are written: reads them, applies the leak
    rule here (`attribution_request`), and writes the sites and types the child should name
    in its live process. A thread polls for the child's DONE_FILE."""

    def __init__(self, work: Path, settings: LeakSettings, every_s: float = 0.05) -> None:
        self.work, self.settings, self.every_s = work, settings, every_s
        self.elapsed_s = 0.0  # reading the snapshots and deciding the request
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="leak-requester", daemon=True)

    def __enter__(self) -> AttributionRequester:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _poll(self) -> None:
        while not self.done.wait(self.every_s):
            if (self.work / child_tracked.DONE_FILE).exists():
                begun = time.perf_counter()
                try:
                    request = self._request()
                except Exception as exc:
                    # Unanswered, the child would wait REQUEST_WAIT_S (300 s) for nothing:
                    # it names nothing, and the analysis after it says what failed.
                    message = f"memdiag: the leak rule failed on the snapshots: {exc!r}"
                    print(message, file=sys.stderr, flush=True)
                    request = dict(NOTHING_REQUESTED)
                write_json_atomic(self.work / child_tracked.REQUEST_FILE, request)
                self.elapsed_s = time.perf_counter() - begun
                return

    def _request(self) -> dict[str, Any]:
        try:
            snaps = [load_snapshot(p) for p in sorted(self.work.glob("iter-*.json"))]
            return attribution_request(snaps, self.settings)
        except (MemdiagError, ValueError):
            # Nothing to decide on (no snapshot readable): the child names nothing.
            return dict(NOTHING_REQUESTED)


# What the child names when there is nothing to decide on: nothing.
NOTHING_REQUESTED: dict[str, Any] = {"chains": 0, "sites": [], "types": [], "grown_types": []}


def _options(
    target: Target,
    extra: dict[str, Any],
    memray_path: str | None = None,
    native: bool = False,
    timeout: float | None = None,
) -> RunOptions:
    extra.setdefault("target", target.text)
    return RunOptions(
        child_module=child_tracked.__name__,
        extra=extra,
        memray_path=memray_path,
        native=native,
        timeout=timeout,
        unset_env=UNSET_ENV,
    )


def _command_series(target: Target, params: dict[str, Any], plan: LeakPlan) -> Series:
    """Sample an external command's process tree every `plan.every` seconds.

    A service that never exits is stopped after `iterations` intervals: the timeout here is
    how the series ends, not a failure.
    """
    every = plan.every or 1.0
    limit = plan.timeout or every * (plan.iterations + 0.5)
    run = _measure(target, params, RunOptions(interval=every, timeout=limit))
    snaps = [
        Snapshot(
            label=f"{s.t_s:g} s",
            time_s=s.t_s,
            target=target.text,
            params=dict(params),
            phase=s.phase,
            rss_bytes=s.rss_bytes,
        )
        for s in run.timeline
        if s.rss_bytes > 0
    ]
    return Series(run, snaps, {})
