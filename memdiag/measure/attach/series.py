"""Snapshots of a running Python process memdiag did not start: one, or one per interval.

`pid_snapshot` is `memdiag snapshot --pid`; `pid_leak_series` is `memdiag leaks --pid`: a
snapshot every `every` seconds, the last interval under tracemalloc (its sites, and the
objects the chains and owners start from), as `memdiag leaks` traces its last call. Each
snapshot is one visit (`visit.Visit`): nothing of memdiag stays in the process between two.
"""

from __future__ import annotations

import time
from typing import Any

from memdiag.analysis.leaks import LeakSettings, attribution_request
from memdiag.measure.attach.target import inspect_process
from memdiag.measure.attach.visit import Visit, can_enter_quietly
from memdiag.measure.interrupt import StopOnInterrupt
from memdiag.measure.python.driver import OnSnapshot, Series
from memdiag.model import Run, Snapshot


def pid_snapshot(
    pid: int, trace_s: float | None = None, frames: int = 8, inject: bool = False
) -> Snapshot | None:
    """Return the Snapshot of the running CPython `pid` taken inside it, with its largest
    owners; with `trace_s`, the sites of what that window allocated and still holds.
    None when `pid` runs no CPython, or runs no agent and gdb may not go in (`inject`
    False): the caller shows its /proc view."""
    if inspect_process(pid).python is None or not (inject or can_enter_quietly(pid)):
        return None
    request = {"label": f"pid {pid}", "owners": 10, "trace_s": trace_s, "frames": frames}
    visit = Visit(pid, request, inject)
    try:
        visit.start()
        data = visit.read("snapshot.json", (trace_s or 0) + 120)
    finally:
        visit.finish()
    snap = Snapshot.from_dict(data)
    snap.attached = {**visit.attached, "trace_s": trace_s}
    return snap


def pid_leak_series(
    pid: int,
    every: float,
    iterations: int,
    settings: LeakSettings,
    frames: int = 1,
    on_snapshot: OnSnapshot | None = None,
    inject: bool = False,
) -> Series:
    """Return `iterations` intervals' snapshots of `pid` (one more than intervals) and the
    evidence of the traced last interval. Ctrl-C ends the series after the interval under
    way (then `partial`, without the traced interval); a second Ctrl-C stops at once."""
    from memdiag.measure.attach.target import require_python

    require_python(inspect_process(pid))
    snaps: list[Snapshot] = []
    evidence: dict[str, Any] = {}
    started = time.monotonic()
    with StopOnInterrupt("interval") as interrupt:
        stop = interrupt.requested
        for index in range(iterations):
            if index == iterations - 1 and not stop.is_set():
                evidence = _traced_interval(
                    pid, every, frames, snaps, settings, on_snapshot, inject
                )
                break
            _add(snaps, _visit(pid, f"{time.monotonic() - started:.0f} s", inject), on_snapshot)
            stop.wait(max(every - (time.monotonic() - started - index * every), 0))
            if stop.is_set():
                _add(snaps, _visit(pid, f"{time.monotonic() - started:.0f} s", inject), on_snapshot)
                break
    wall = time.monotonic() - started
    run = Run(
        target=f"pid {pid}",
        params={},
        status="ok",
        peak_rss_bytes=max((s.rss_bytes for s in snaps), default=0),
        wall_s=round(wall, 3),
        cpu_s=0.0,
    )
    return Series(run, snaps, evidence, partial=stop.is_set())


def _visit(pid: int, label: str, inject: bool) -> Snapshot:
    visit = Visit(pid, {"label": label}, inject)
    try:
        visit.start()
        data = visit.read("snapshot.json")
    finally:
        visit.finish()
    snap = Snapshot.from_dict(data)
    snap.attached = visit.attached
    return snap


def _traced_interval(
    pid: int,
    every: float,
    frames: int,
    snaps: list[Snapshot],
    settings: LeakSettings,
    on_snapshot: OnSnapshot | None,
    inject: bool,
) -> dict[str, Any]:
    """Take the last two snapshots around an interval under tracemalloc; return the
    evidence the agent found in the live process for memdiag's attribution request."""
    before = f"{every * len(snaps):g} s"
    request = {
        "label": f"{every * (len(snaps) + 1):g} s",
        "before_label": before,
        "trace_s": every,
        "frames": frames,
        "evidence": True,
    }
    visit = Visit(pid, request, inject)
    try:
        visit.start()
        for name in ("before.json", "snapshot.json"):
            snap = Snapshot.from_dict(visit.read(name, every + 120))
            snap.attached = visit.attached
            _add(snaps, snap, on_snapshot)
        visit.answer("request.json", attribution_request(snaps, settings))
        evidence = visit.read("evidence.json")
    finally:
        visit.finish()
    return evidence


def _add(snaps: list[Snapshot], snap: Snapshot, on_snapshot: OnSnapshot | None) -> None:
    snaps.append(snap)
    if on_snapshot is not None:
        on_snapshot(snap)
