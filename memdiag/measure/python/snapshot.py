"""Takes a snapshot of the current process: RSS, USS, Python heap, sites, types, GC.

Runs inside the measured child, standard library only. Sites come from tracemalloc (started
by the caller with the frames wanted); types from the garbage collector's objects plus the
objects they refer to directly, since strings, bytes and numbers are never tracked by the
GC and are often exactly what leaks (error messages, buffers).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import tracemalloc

from memdiag.measure.process.rollup import uss_bytes
from memdiag.versions import SCHEMA_VERSION

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a visit loads this)

if TYPE_CHECKING:  # not at run time: a visit to a running service imports this module
    from collections.abc import Callable, Iterable
    from typing import Any

# Enough sites that a leak still small at the first snapshot is already in the list.
SITES_KEPT = 500
# pymalloc's largest block: a call traced in slices samples blocks up to this size only.
SMALL_BLOCK = 512
# memdiag's own allocations in the child (this capture, the child entry) are not the job's.
_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
_SKIPPED_FILES = (tracemalloc.__file__, "<frozen importlib._bootstrap>", "<unknown>")


def type_name(kind: type) -> str:
    """Return `module.QualName` for a class, the bare name for builtins."""
    module = getattr(kind, "__module__", "builtins")
    name = getattr(kind, "__qualname__", kind.__name__)
    return name if module == "builtins" else f"{module}.{name}"


def live_objects(skip: set[int] | None = None) -> list[Any]:
    """Return the GC's objects plus the untracked objects they refer to, each once; not
    the containers whose ids are in `skip`, nor what only they refer to."""
    tracked = _collected(skip)
    seen: dict[int, Any] = {}
    frontier: Iterable[Any] = gc.get_referents(*tracked)
    # Two levels: a str inside an untracked tuple (untracked: it holds only atomics) counts.
    for _ in range(2):
        containers = []
        for obj in frontier:
            if not gc.is_tracked(obj) and id(obj) not in seen:
                seen[id(obj)] = obj
                if type(obj) in (tuple, dict):
                    containers.append(obj)
        frontier = gc.get_referents(*containers) if containers else ()
    tracked.extend(seen.values())
    return tracked


def _collected(skip: set[int] | None) -> list[Any]:
    """Return the collector's objects but those whose ids are in `skip` (memdiag's own)."""
    tracked = gc.get_objects()
    if not skip:
        return tracked
    kept = []  # a loop, not a comprehension: one over `skip` would make it a cell, counted
    for obj in tracked:
        if id(obj) not in skip:
            kept.append(obj)
    return kept


def type_stats(objects: list[Any], large: list[list[int]] | None = None) -> list[dict[str, Any]]:
    """Return [{name, count, size_bytes}] per type, largest total size first; with `large`,
    append [id, size] to it for each object of at least LARGE_BYTES (a collection's own
    table counts in its size: `owners.table_growth` follows them from snapshot to snapshot)."""
    counts: dict[type, int] = {}
    sizes: dict[type, int] = {}
    getsizeof = sys.getsizeof
    for obj in objects:
        kind = type(obj)
        counts[kind] = counts.get(kind, 0) + 1
        try:
            size = getsizeof(obj)
        except TypeError:  # a C object without a size: count it anyway
            sizes.setdefault(kind, 0)
            continue
        sizes[kind] = sizes.get(kind, 0) + size
        if large is not None and size >= LARGE_BYTES:
            large.append([id(obj), size])
    # A loop, not a comprehension: one over `sizes` would make it a cell while counting.
    stats: dict[type, list[int]] = {}
    for kind, count in counts.items():
        stats[kind] = [count, sizes[kind]]
    return _merged(stats)


def _merged(stats: dict[type, list[int]]) -> list[dict[str, Any]]:
    """Return {type: [count, bytes]} as rows by type name (two classes may share one),
    largest total size first."""
    merged: dict[str, list[int]] = {}
    for kind, (count, size) in stats.items():
        entry = merged.setdefault(type_name(kind), [0, 0])
        entry[0] += count
        entry[1] += size
    rows = [{"name": n, "count": c, "size_bytes": s} for n, (c, s) in merged.items()]
    return sorted(rows, key=lambda r: -r["size_bytes"])


def _is_own(filename: str) -> bool:
    return filename.startswith(_OWN_DIR) or filename in _SKIPPED_FILES


def site_stats(snapshot: tracemalloc.Snapshot, keep: int = SITES_KEPT) -> list[dict[str, Any]]:
    """Return the `keep` largest allocation lines, each with its largest traceback, and the
    part of each in blocks of at most SMALL_BLOCK bytes (`small_bytes`, `small_count`).

    Grouped by the allocating line, not the whole traceback: one line called from many
    places is one site, shown with the call path that holds the most of it. The traces are
    read as tracemalloc's own `Snapshot.statistics` reads them (its tuples of domain, size,
    frames most recent first, and frame count): a Trace object per trace would cost more
    than the grouping.
    """
    by_line: dict[tuple[str, int], list[int]] = {}  # size, count, small size, small count
    paths: dict[tuple[Any, ...], int] = {}
    raw: list[tuple[int, int, Any, int]] = snapshot.traces._traces  # type: ignore[attr-defined]
    for _, size, frames, _ in raw:
        filename, lineno = frames[0]
        if _is_own(filename):
            continue
        entry = by_line.get((filename, lineno))
        if entry is None:
            entry = by_line[(filename, lineno)] = [0, 0, 0, 0]
        entry[0] += size
        entry[1] += 1
        if size <= SMALL_BLOCK:
            entry[2] += size
            entry[3] += 1
        paths[frames] = paths.get(frames, 0) + size
    largest: dict[tuple[str, int], tuple[int, tuple[Any, ...]]] = {}
    for frames, size in paths.items():
        best = largest.get(frames[0])
        if best is None or size > best[0]:
            largest[frames[0]] = (size, frames)
    top = sorted(by_line.items(), key=lambda item: -item[1][0])[:keep]
    return [
        {
            "traceback": [[f, n] for f, n in reversed(largest[line][1])],
            "size_bytes": size,
            "count": count,
            "small_bytes": small,
            "small_count": small_count,
        }
        for line, (size, count, small, small_count) in top
    ]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def capture(label: str, phase: str | None = None, types: bool = True) -> dict[str, Any]:
    """Return a snapshot of this process as the JSON form of `memdiag.model.Snapshot`.

    Collects garbage first: a cycle waiting for the collector is not a leak. Sites and
    types are computed in a forked copy of the process (see `in_fork`).
    """
    data = _process_figures(label, phase)
    data.update(_in_fork(tracemalloc.is_tracing(), types))
    return data


def _process_figures(label: str, phase: str | None, full: bool = True) -> dict[str, Any]:
    """Return the figures read in the process itself, after a full collection (with `full`
    False, of the young generations only: see `Background`)."""
    if full:
        gc.collect()
    else:
        gc.collect(1)
    traced = tracemalloc.is_tracing()
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "snapshot",
        "label": label,
        "time_s": time.time(),
        "phase": phase,
        "pid": os.getpid(),
        "rss_bytes": _rss_bytes(),
        "uss_bytes": uss_bytes(),
        "heap_bytes": tracemalloc.get_traced_memory()[0] if traced else None,
        "tracemalloc_bytes": tracemalloc.get_tracemalloc_memory() if traced else None,
        "frames": tracemalloc.get_traceback_limit() if traced else 0,
        "gc_counts": list(gc.get_count()),
        "gc_collections": [s["collections"] for s in gc.get_stats()],
    }


class Background:
    """Snapshots whose sites and types are computed in a forked copy while the job goes on.

    The job waits only for the collection and the fork; the copy, a consistent picture of
    the heap at that moment, counts the objects on the other core and writes the snapshot
    file itself (atomically). One copy at a time: `take` waits for the previous one. The
    Python heap is then the live objects' sizes (`heap_basis` "objects"), the same figure in
    every snapshot whether tracemalloc runs or not.

    With `young_only` (where the compiled loops were built), a snapshot not asked `full`
    collects the young generations only, and the copy counts what a full collection would
    keep (`_heapwalk.count_reachable`): a full one visits every member of every container,
    0.1 s per million at a sync service's set. When a copy finds cyclic garbage a full
    collection would have freed (`unreachable_objects` in its file), every snapshot after it
    collects fully again, so that weakref callbacks and finalizers run as they would have:
    only where it would have found nothing is the full collection left out.
    """

    def __init__(self, young_only: bool = False) -> None:
        self.pid: int | None = None
        self.waited_s = 0.0  # the job's time waiting for a copy to finish
        self.young_only = young_only

    def take(
        self,
        path: str,
        label: str,
        extra: dict[str, Any],
        untracked_ids: str | None = None,
        full: bool = False,
        idle: bool = True,
    ) -> None:
        """Start the snapshot `label`, written to `path` with `extra` fields added; with
        `untracked_ids`, the ids of the untracked objects counted are written there too;
        with `full`, after a full collection whatever `young_only` says. With `idle` False
        (the job waits for this one at once: its last), the copy keeps a normal share."""
        self.wait()
        garbage = os.path.join(os.path.dirname(path), GARBAGE_FOUND)
        if self.young_only and os.path.exists(garbage):
            self.young_only = False  # cyclic garbage is made here: collected from now on
        full = full or not self.young_only
        data = {**_process_figures(label, None, full), **extra, "heap_basis": "objects"}
        data["full_collection"] = full
        traced = tracemalloc.is_tracing()

        def count_and_write() -> None:
            begun = time.perf_counter()
            data.update(_contents(traced, True, untracked_ids, large=True, reach=not full))
            if data.get("unreachable_objects"):
                with open(garbage, "w"):
                    pass
            data["heap_bytes"] = sum(t["size_bytes"] for t in data["types"])
            data["copy_s"] = round(time.perf_counter() - begun, 4)
            data["copy_idle"] = _is_idle()  # as it ended: a copy waited for is not (root)
            tmp = f"{path}.tmp"
            with open(tmp, "w") as out:
                json.dump(data, out)
            os.replace(tmp, path)

        self.pid = fork_copy(count_and_write)
        if idle:
            # The job's next call runs meanwhile: the copy takes only spare CPU. Set from
            # here, not by the copy itself, so that `wait` always comes after it: set by the
            # copy, it came after the `wait` that follows the last snapshot at once, and that
            # copy, waited for, ran idle-only, behind any other work on the machine.
            _idle(self.pid)

    def wait(self) -> None:
        """Wait for the snapshot in progress; raise when its copy failed."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        begun = time.perf_counter()
        _normal(pid)  # the job now waits for it: back to a normal share where allowed
        reap(pid)
        self.waited_s += time.perf_counter() - begun


def _idle(pid: int) -> None:
    """Put `pid` under SCHED_IDLE: it runs only on a core nothing else wants."""
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def _normal(pid: int) -> None:
    """Put `pid` back under the normal policy (allowed to root; else it stays idle-only: it
    runs on a core nothing else wants, which other work on the machine can make late)."""
    try:
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def _is_idle() -> bool | None:
    """Return whether this process runs under SCHED_IDLE (None where that is unknown)."""
    try:
        return os.sched_getscheduler(0) == os.SCHED_IDLE
    except (OSError, AttributeError):
        return None


# Beside the snapshots of a `Background` whose copy found cyclic garbage.
GARBAGE_FOUND = "cyclic-garbage"
# Objects this large are listed by id in the snapshots of `leaks` (`large_objects`).
LARGE_BYTES = 64 * 1024


def _contents(
    traced: bool,
    types: bool,
    untracked_ids: str | None = None,
    large: bool = False,
    reach: bool = False,
) -> dict[str, Any]:
    # Sites first, and the raw snapshot dropped before the types are counted: its million
    # trace tuples are not the job's objects.
    snap = tracemalloc.take_snapshot() if traced else None
    tracemalloc.stop()
    sites = site_stats(snap) if snap is not None else []
    del snap
    if not types:
        return {"sites": sites, "types": []}
    listed: list[list[int]] = []
    skip = _containers(sites) if sites else None  # not the job's
    rows, unreachable = count_live(skip, listed, untracked_ids, reach)
    found: dict[str, Any] = {"sites": sites, "types": rows}
    if large:
        found["large_objects"] = listed
    if reach:
        found["unreachable_objects"] = unreachable
    return found


def count_live(
    skip: set[int] | None,
    large: list[list[int]],
    untracked_ids: str | None = None,
    reach: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Return `type_stats` of `live_objects(skip)`, appending the large objects to `large`;
    with `untracked_ids`, the untracked objects' ids are written there (`write_ids`). With
    `reach` (the compiled loops only), of what a full collection would keep; then also how
    many of the collector's objects were left out as cyclic garbage (else 0).

    By the compiled loops where they were built (about 20 times faster at millions of
    objects: `_heapwalk.count`), else by the loops here; both give the same counts.
    """
    from memdiag.measure.python import untraced

    try:
        from memdiag.measure.python import _heapwalk
    except ImportError:
        if reach:
            raise RuntimeError("count_live(reach=True) needs the compiled loops") from None
        objects = live_objects(skip)
        if untracked_ids:
            untraced.write_ids(untracked_ids, (id(o) for o in objects if not gc.is_tracked(o)))
        return type_stats(objects, large), 0
    unreachable = 0
    if reach:
        stats, found, ids, unreachable = _heapwalk.count_reachable(_collected(skip), LARGE_BYTES)
    else:
        stats, found, ids = _heapwalk.count(_collected(skip), LARGE_BYTES)
    large.extend(found)
    if untracked_ids:
        untraced.write_id_bytes(untracked_ids, ids)
    return _merged(stats), unreachable


def compiled() -> bool:
    """Return whether the compiled loops (`_heapwalk`) were built for this interpreter."""
    try:
        from memdiag.measure.python import _heapwalk  # noqa: F401
    except ImportError:
        return False
    return True


def _containers(data: Any) -> set[int]:
    """Return the ids of the lists and dicts in `data`, a JSON-like structure."""
    found: set[int] = set()
    stack = [data]
    while stack:
        obj = stack.pop()
        if isinstance(obj, list | dict):
            found.add(id(obj))
            stack.extend(obj.values() if isinstance(obj, dict) else obj)
    return found


def _in_fork(traced: bool, types: bool) -> dict[str, Any]:
    return in_fork(lambda: _contents(traced, types))


def in_fork(compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Return `compute()`, run in a forked copy of this process and sent back as JSON.

    Under tracemalloc every allocation of the computation itself would be traced, 5 to 10
    times slower: the copy may stop tracing once it has read what it needs, and whatever
    it allocates never reaches the job's process and heap.
    """
    return start_in_fork(compute).result()


class Forked:
    """A forked copy computing a JSON result (`start_in_fork`); `result()` waits for it."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self.pid, self.read_fd = pid, read_fd

    def result(self) -> dict[str, Any]:
        """Return the copy's result; raise when the copy failed."""
        with os.fdopen(self.read_fd, "rb") as source:
            payload = source.read()
        reap(self.pid, failed=not payload)
        result: dict[str, Any] = json.loads(payload)
        return result

    def cancel(self) -> None:
        """Stop the copy and wait for it (its result is not wanted)."""
        import signal

        os.close(self.read_fd)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def start_in_fork(compute: Callable[[], dict[str, Any]]) -> Forked:
    """Start `compute()` in a forked copy of this process (as `in_fork`) while this one goes
    on; its result comes back as JSON through a pipe, read by `Forked.result`."""
    read_fd, write_fd = os.pipe()

    def compute_and_send() -> None:
        os.close(read_fd)
        payload = json.dumps(compute()).encode()
        with os.fdopen(write_fd, "wb") as out:
            out.write(payload)

    pid = fork_copy(compute_and_send)
    os.close(write_fd)
    return Forked(pid, read_fd)


def fork_copy(work: Callable[[], None]) -> int:
    """Return the pid of a forked copy of this process that runs `work` with the collector
    off, prints the traceback if it fails, and exits without running any cleanup."""
    pid = os.fork()
    if pid == 0:  # the copy
        code = 0
        try:
            gc.disable()
            work()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def reap(pid: int, failed: bool = False) -> None:
    """Wait for the copy `pid`; raise when it (or, `failed`, what it sent) failed."""
    _, status = os.waitpid(pid, 0)
    if status != 0 or failed:
        raise RuntimeError("a snapshot's forked copy failed (its traceback is above)")
