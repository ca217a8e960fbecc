"""Runs in memdiag (the parent): what the preload and Node's fatal-error reports wrote.

One `<pid>-<thread>.jsonl` per Node process or worker thread (see preload.js) and, for a
process that died of a fatal error, Node's `report.*.json`. A line that does not parse (a
process killed mid-write) is skipped; nothing here fails the run.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memdiag.model.v8 import ProcessEnd, V8Death, V8Gc, V8Process, V8Stats

HEAP_OOM_TEXT = "heap out of memory"


@dataclass
class NodeRecords:
    """V8's figures for a run (None when no Node process reported), and the heap series
    summed over the processes alive at each time: (epoch s, used, total, external bytes)."""

    stats: V8Stats | None
    series: list[tuple[float, int, int, int]] = field(default_factory=list)


@dataclass
class _Track:
    start: dict[str, Any]
    samples: list[dict[str, Any]]
    ended: bool


def read_records(folder: Path, wall_s: float) -> NodeRecords:
    """Return what the Node processes of a run wrote into `folder`; `wall_s` is the run's
    wall time, against which each process's GC pause makes `gc_share`."""
    tracks = [t for t in (_read_track(p) for p in sorted(folder.glob("*.jsonl"))) if t]
    if not tracks:
        return NodeRecords(None)
    deaths = _read_reports(folder)
    processes = [
        _process(t, deaths.get((t.start["pid"], t.start.get("thread", 0)))) for t in tracks
    ]
    return NodeRecords(_stats(processes, wall_s), _series(tracks))


def _read_track(path: Path) -> _Track | None:
    start: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = []
    ended = False
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if record.get("e") == "start":
            start = record
        elif record.get("e") in ("s", "end") and isinstance(record.get("t"), int | float):
            samples.append(record)
            ended = ended or record["e"] == "end"
    return _Track(start, samples, ended) if start else None


def _read_reports(folder: Path) -> dict[tuple[int, int], V8Death]:
    """Return the heap at death of each (pid, thread) Node reported a fatal error for."""
    deaths = {}
    for path in folder.glob("report.*.json"):
        try:
            report = json.loads(path.read_text(errors="replace"))
            header, heap = report["header"], report.get("javascriptHeap", {})
        except (OSError, ValueError, KeyError, TypeError):
            continue
        usage = report.get("resourceUsage", {})
        deaths[(int(header.get("processId", 0)), int(header.get("threadId", 0) or 0))] = V8Death(
            reason=str(header.get("event", "")),
            heap_used_bytes=heap.get("usedMemory"),
            heap_total_bytes=heap.get("totalMemory"),
            heap_limit_bytes=heap.get("memoryLimit"),
            external_bytes=heap.get("externalMemory"),
            rss_bytes=_int(usage.get("rss")),
        )
    return deaths


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _process(track: _Track, death: V8Death | None) -> V8Process:
    start, samples = track.start, track.samples

    def peak(*keys: str) -> int:
        return max((int(s.get(k) or 0) for s in samples for k in keys), default=0)

    counts: dict[str, dict[str, float]] = {}
    for sample in samples:
        for kind, (count, pause) in (sample.get("gc") or {}).items():
            entry = counts.setdefault(kind, {"count": 0, "pause_s": 0.0})
            entry["count"] += count
            entry["pause_s"] += pause
    by_kind = {
        k: {"count": int(v["count"]), "pause_s": round(v["pause_s"], 6)} for k, v in counts.items()
    }
    gc = V8Gc(
        sum(int(v["count"]) for v in by_kind.values()),
        round(sum(v["pause_s"] for v in by_kind.values()), 6),
        by_kind,
    )
    used = peak("used", "peak")
    if death is not None and death.heap_used_bytes:
        used = max(used, death.heap_used_bytes)
    return V8Process(
        pid=int(start["pid"]),
        kind=start.get("kind", "main"),
        thread=int(start.get("thread", 0)),
        ppid=start.get("ppid"),
        argv=list(start.get("argv") or []),
        node=str(start.get("node", "")),
        heap_limit_bytes=int(start.get("heap_limit") or 0),
        peak_heap_used_bytes=used,
        peak_heap_total_bytes=peak("total"),
        peak_external_bytes=max(
            peak("ext", "peak_ext"), (death.external_bytes or 0) if death else 0
        ),
        peak_array_buffers_bytes=peak("ab"),
        gc=gc,
        end=_end(track, death),
        at_death=death,
    )


def _end(track: _Track, death: V8Death | None) -> ProcessEnd:
    if death is not None:
        return "heap-limit" if HEAP_OOM_TEXT in death.reason else "fatal"
    return "exited" if track.ended else "died"


def _stats(processes: list[V8Process], wall_s: float) -> V8Stats:
    top = max(processes, key=lambda p: p.peak_heap_used_bytes)
    by_kind: dict[str, dict[str, float]] = {}
    for proc in processes:
        for kind, entry in proc.gc.by_kind.items():
            merged = by_kind.setdefault(kind, {"count": 0, "pause_s": 0.0})
            merged["count"] += entry["count"]
            merged["pause_s"] = round(merged["pause_s"] + entry["pause_s"], 6)
    gc = V8Gc(
        sum(p.gc.count for p in processes), round(sum(p.gc.pause_s for p in processes), 6), by_kind
    )
    dead = next((p for p in processes if p.end == "heap-limit"), None)
    dead = dead or next((p for p in processes if p.at_death is not None), None)
    worst_pause = max(p.gc.pause_s for p in processes)
    return V8Stats(
        peak_heap_used_bytes=top.peak_heap_used_bytes,
        heap_limit_bytes=top.heap_limit_bytes,
        peak_external_bytes=max(p.peak_external_bytes for p in processes),
        peak_array_buffers_bytes=max(p.peak_array_buffers_bytes for p in processes),
        gc=gc,
        gc_share=round(min(1.0, worst_pause / wall_s), 4) if wall_s > 0 else None,
        at_death=dead.at_death if dead else None,
        processes=list(processes),
    )


def _series(tracks: list[_Track]) -> list[tuple[float, int, int, int]]:
    """Sum each process's latest sample at every time any process sampled, counting a
    process only between its first and its last sample."""
    rows = [
        [
            (float(s["t"]), int(s.get("used", 0)), int(s.get("total", 0)), int(s.get("ext", 0)))
            for s in t.samples
        ]
        for t in tracks
    ]
    rows = [r for r in rows if r]
    stamps = [[x[0] for x in r] for r in rows]
    series = []
    for t in sorted({row[0] for r in rows for row in r}):
        used = total = ext = 0
        for r, times in zip(rows, stamps, strict=True):
            if times[0] <= t <= times[-1]:
                _, u, tot, e = r[bisect.bisect_right(times, t) - 1]
                used, total, ext = used + u, total + tot, ext + e
        series.append((t, used, total, ext))
    return series
