"""Runs in the child of `memdiag snapshot` and `memdiag leaks`: the target under tracemalloc.

Run through memdiag's launcher as `python -m memdiag.measure.python.tracked SPEC.json`, as
`memdiag.measure.python.bootstrap` is, whose target loading, GC timing and result file it shares.
`spec["extra"]` says what to do:

- `mode: "snapshot"`: snapshot before the call, at each probe phase boundary (`at_phase`),
  after it; with `peak_path`, the call alone under memray's aggregated capture (what was
  live at the peak); with `tracemalloc: false`, no tracemalloc (sites then come from memray);
- `mode: "leaks"`: call the target `iterations` times, snapshot after each, tracemalloc
  on for the last call only; then, in the still-live process, name the type allocated at
  each leaking site, the chain of references that keeps the leading leaking types alive,
  and the owners of the growth (`memdiag.measure.python.owners`). Which sites and types is memdiag's
  decision, made on the saved snapshots: the child writes DONE_FILE after its last
  snapshot and waits (at most REQUEST_WAIT_S) for REQUEST_FILE
  (`memdiag.analysis.leaks.attribution_request`);
- `mode: "every"`: call it once, snapshot every `every` seconds while it runs.

Each snapshot is written to `out` at once and dropped: a list of snapshots kept here would
itself grow every iteration. Standard library only, but memray for `peak_path`.
"""

from __future__ import annotations

import array
import gc
import json
import os
import re
import statistics
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memdiag.measure.python import bootstrap as child_bootstrap
from memdiag.measure.python import untraced
from memdiag.measure.python.snapshot import (
    Background,
    capture,
    compiled,
    fork_copy,
    reap,
    start_in_fork,
)
from memdiag.versions import SCHEMA_VERSION

Job = dict[str, Any]
# Written into `out` by memdiag on Ctrl-C: stop after the current iteration.
STOP_FILE = "stop"
# Written here after the last snapshot; memdiag answers with the sites and types to name.
DONE_FILE = "snapshots-done"
REQUEST_FILE = "request.json"
# How long the child waits for the request: memdiag reads the snapshots and applies the
# leak rule, seconds even for large heaps; past this the report has no types and chains.
REQUEST_WAIT_S = 300.0


def _save(job: Job, name: str, label: str, phase: str | None = None) -> None:
    data = capture(label, phase, types=job.get("types", True))
    data["target"], data["params"] = job["target"], job["params"]
    _write(Path(job["out"]) / name, data)


def _write(path: Path, data: dict[str, Any]) -> None:
    # Compact and without fsync: this runs between the job's calls, under tracemalloc.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _records(returned: Any) -> int:
    return returned if isinstance(returned, int) and not isinstance(returned, bool) else 0


def run_snapshot(func: Any, job: Job) -> int:
    """Snapshot before, at each phase boundary, and after one call; return its records."""
    from memdiag import probe

    boundaries = [0]

    def on_phase(name: str | None) -> None:
        boundaries[0] += 1
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name))
        _save(job, f"phase-{boundaries[0]:02d}-{slug}.json", f"phase {name}", name)

    # Started before the first snapshot: what memray loads as it starts is not the job's.
    tracker = _peak_tracker(job.get("peak_path"))
    _save(job, "before.json", "before")
    if job.get("at_phase"):
        probe.phase_hooks.append(on_phase)
    try:
        returned = func(**job["params"])
    finally:
        if tracker is not None:
            tracker.__exit__(None, None, None)
            # The capture is whole: memdiag reads it while this process snapshots and exits.
            Path(f"{job['peak_path']}{CAPTURED}").touch()
        if on_phase in probe.phase_hooks:
            probe.phase_hooks.remove(on_phase)
    _save(job, "after.json", "after")
    return _records(returned)


def _peak_tracker(path: str | None) -> Any:
    """Return a started memray aggregated capture of the call alone, None without `path`.

    It keeps the high-water mark and what was live there, at about 1.1-1.4x the job's time.
    """
    if not path:
        return None
    import memray

    Path(path).unlink(missing_ok=True)  # memray refuses to overwrite
    tracker = memray.Tracker(
        path,
        file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS,
        memory_interval_ms=PEAK_RSS_MS,
    )
    tracker.__enter__()
    return tracker


def run_leaks(func: Any, job: Job) -> int:
    """Call the target `iterations` times, snapshot after each; name what leaks.

    The calls run untraced but the last: after each, a forked copy counts the live objects
    by type (`Background`) while the next call runs, so finding what grows costs little
    more than the calls. The last call runs under tracemalloc with `frames` frames: what it
    allocated and still holds after it is one call's growth by allocating line, and the
    objects the chain search starts from. When tracing it costs more than `FULL_CALLS`
    untraced calls, the rest of it is traced in slices (`untraced.Tracer`). Which objects
    are new (`memdiag.measure.python.owners.new_since`): the collector's objects frozen before the
    call are old, and the untracked objects the snapshot before it counted.
    Ctrl-C before the last call leaves the report without sites.

    A call that raises (MemoryError too) ends the iterations: its snapshot is not taken
    (it did not finish), the snapshots before it are analysed as after Ctrl-C, and its
    exception is raised again at the end, its frames cleared (the job's locals are not
    evidence), for the result file.
    """
    records = 0
    out = Path(job["out"])
    shots = Background(young_only=compiled())
    stages: dict[str, float] = {}
    # Made before the first snapshot, so that none of memdiag's own objects count as growth.
    last, tracer = job["iterations"], untraced.Tracer()
    _TRACER[:] = [tracer]
    took = array.array("d")
    fields = {"target": job["target"], "params": job["params"]}
    last_fields: dict[str, Any] = {**fields, "traced_share": None, "traced_whole": None}
    old_ids = str(out / OLD_IDS)
    begun = time.perf_counter()
    shots.take(str(out / "iter-000.json"), "iteration 0", fields, full=True)
    _spent(stages, "snapshot_pauses", begun)
    vary = job.get("vary")
    failed: BaseException | None = None
    full_s: float | None = None
    for i in range(1, last + 1):
        params = dict(job["params"])
        if vary:
            params[vary] = params.get(vary, 0) + i  # fresh input per call, as a service gets
        if i == last:
            # Collected by the snapshot just taken (the young generations, or fully once a
            # copy found cyclic garbage: what is left is old, so not counted as new).
            gc.freeze()  # never collected nor moved in the call: what is not frozen is new
            full_s = max(FULL_CALLS * statistics.median(took), MIN_FULL_S) if took else None
            tracer.start(job.get("frames", 1), full_s)
        started = time.perf_counter()
        try:
            records += _records(func(**params))
        except Exception as exc:
            failed = exc
        finally:
            if i == last:
                # Before anything else: the slicing thread puts tracemalloc's hooks back,
                # and tracemalloc must not stop under it.
                last_fields["traced_share"] = tracer.stop()
        took.append(time.perf_counter() - started)
        del params
        if i == last and full_s is not None and took[-1] > full_s and tracer.why_whole():
            untraced_s = statistics.median(took[:-1])
            last_fields["traced_whole"] = (
                f"{tracer.why_whole()}: slices need CPython's own allocators; it took "
                f"{took[-1]:.1f} s, {took[-1] / max(untraced_s, 1e-6):.0f}x an untraced call"
            )
        if failed is not None:
            if i == last:
                tracemalloc.stop()  # an unfinished call: no sites, the rest runs untraced
                gc.unfreeze()
            break
        stage = "traced_call" if i == last else "calls"
        stages[stage] = stages.get(stage, 0.0) + took[-1]
        if i == last:
            begun = time.perf_counter()
            _write_new_ids(out / NEW_IDS)
            gc.unfreeze()
            _spent(stages, "new_ids", begun)
        begun = time.perf_counter()
        if i == last - 1:  # the snapshot whose untracked objects are the old ones
            tracer.log_frees()
        shots.take(
            str(out / f"iter-{i:03d}.json"),
            f"iteration {i}",
            last_fields if i == last else fields,
            old_ids if i == last - 1 else None,
            full=i == last,
            idle=i != last,  # waited for at once
        )
        _spent(stages, "snapshot_pauses", begun)
        if (out / STOP_FILE).exists():
            break  # Ctrl-C in memdiag: report on the snapshots taken so far
    if failed is not None:
        traceback.clear_frames(failed.__traceback__)

    def last_copy() -> None:
        begun = time.perf_counter()
        shots.wait()
        _spent(stages, "snapshot_pauses", begun)
        stages["snapshot_waits"] = shots.waited_s  # of the pauses: for the copy before

    _write_evidence(job, stages, last_copy)
    if failed is not None:
        raise failed
    return records


def _spent(stages: dict[str, float], name: str, since: float) -> None:
    """Add the seconds since `since` (a perf_counter reading) to the stage `name`."""
    stages[name] = stages.get(name, 0.0) + time.perf_counter() - since


def _copies_s(out: Path) -> float:
    """Return the seconds the snapshots' forked copies took, beside the calls."""
    from memdiag.measure.python.owners import read_snapshots

    total = 0.0
    for snap in read_snapshots(out).values():
        try:
            total += float(snap.get("copy_s") or 0.0)
        except (ValueError, TypeError):
            continue
    return total


def _write_new_ids(path: Path) -> None:
    """Write the ids of the collector's objects made by the traced call (not frozen)."""
    gc.collect()  # the call's garbage: the frozen objects are not looked at

    def write() -> None:
        untraced.write_ids(str(path), (id(obj) for obj in gc.get_objects()))

    reap(fork_copy(write))


# How often memray's capture of `run_snapshot`'s call samples RSS, in ms. Only its peak and
# what was live there and at the end are read (the runner samples RSS itself): at memray's
# default of 10 ms its sampling thread cost 7% of a SQLAlchemy migration's time.
PEAK_RSS_MS = 1000
# Beside memray's capture of `run_snapshot`'s call, once the capture is written whole.
CAPTURED = ".done"
# The traced call is traced whole for this many untraced calls' time (at least MIN_FULL_S
# seconds), then in slices. Every traced object costs three times (in the call, in the last
# snapshot's copy, which reads every trace, and in the evidence's): on a sync service adding
# 200,000 strings a call, 0.25 s whole costs 0.4 s less in all than 0.5 s. Traced in slices,
# a site's objects are sampled even below the growth threshold as the share of the call's
# time scales it (`memdiag.analysis.leaks.SLICED_MARGIN`): that share overstates the share
# of objects traced, and record-sync's site was left without a type 3 times in 10 beside a
# busy loop at 0.25 s before.
FULL_CALLS = 1.0
MIN_FULL_S = 0.25
# Ids written for `memdiag.measure.python.owners.new_since`, in the snapshot directory.
NEW_IDS = "new-tracked.ids"
OLD_IDS = "old-untracked.ids"
# The last call's tracer: the analysis's copy puts the allocators back (`untraced`).
_TRACER: list[untraced.Tracer] = []


def run_every(func: Any, job: Job) -> int:
    """Call the target once; snapshot every `every` seconds while it runs."""
    done = threading.Event()
    taken = [0]

    def watch() -> None:
        while not done.wait(job["every"]):
            taken[0] += 1
            _save(job, f"iter-{taken[0]:03d}.json", f"{taken[0] * job['every']:g} s")

    _save(job, "iter-000.json", "0 s")
    watcher = threading.Thread(target=watch, name="snapshots", daemon=True)
    watcher.start()
    try:
        records = _records(func(**job["params"]))
    finally:
        done.set()
        watcher.join()
    _write_evidence(job)
    return records


def _write_evidence(
    job: Job, stages: dict[str, float] | None = None, meanwhile: Callable[[], None] | None = None
) -> None:
    """Write evidence.json: the requested evidence, and `stages` with the seconds waited for
    the request and spent on the evidence (`timings`).

    The evidence's copy is forked first, and learns which objects are new and reads the
    snapshots written so far while `meanwhile` runs here (the last snapshot's copy
    finishing); only then are the snapshots said to be written, and memdiag's request is
    awaited by the copy.
    """
    from memdiag.measure.python.chainroots import capture_threads, release_threads

    out = Path(job["out"])
    capture_threads()  # the fork keeps only this thread: other threads' locals are read now
    try:
        pending = start_in_fork(lambda: _evidence(job, _request_reader(job)))
    finally:
        release_threads()
    if meanwhile is not None:
        try:
            meanwhile()  # it may add to `stages`
        except BaseException:
            pending.cancel()  # it would wait for a request that never comes
            raise
    stages = dict(stages or {})
    _write(out / DONE_FILE, {})
    evidence = pending.result()
    stages.update(evidence.pop("timings", {}))
    _write(out / "evidence.json", {**_KIND, **evidence, "timings": stages})


def _request_reader(job: Job) -> Callable[[], dict[str, Any]]:
    """Return what waits for memdiag's request (empty after the job's `request_wait_s`)."""
    out, wait_s = Path(job["out"]), job.get("request_wait_s", REQUEST_WAIT_S)

    def read() -> dict[str, Any]:
        path, deadline = out / REQUEST_FILE, time.monotonic() + wait_s
        while not path.exists():
            if time.monotonic() > deadline:
                return {"chains": 0, "sites": [], "types": [], "grown_types": []}
            time.sleep(0.02)
        request: dict[str, Any] = json.loads(path.read_text())
        return request

    return read


def _evidence(job: Job, requested: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Return the requested sites' types and the leading leaks' reference chains.

    Runs in a fork (`start_in_fork`) that allocates untraced, at full speed, while the traced
    call's tracebacks stay readable (`untraced.Tracer.restore`). Which objects the traced
    call made is worked out first, and the snapshots written so far are read; then
    `requested()` waits for memdiag's decision (`memdiag.analysis.leaks.attribution_request`).
    """
    from memdiag.measure.python import refchain
    from memdiag.measure.python.owners import new_since, read_snapshots

    out = Path(job["out"])
    traced = tracemalloc.is_tracing() and (out / NEW_IDS).exists()
    if traced and _TRACER:
        _TRACER[0].restore()  # this copy's own allocations are not the call's
    timings: dict[str, float] = {}
    begun = time.perf_counter()
    is_new = new_since(out / NEW_IDS, out / OLD_IDS) if traced else None
    read_snapshots(out)  # those written so far: only the last is read after the request
    _spent(timings, "evidence_newness", begun)
    begun = time.perf_counter()
    request = requested()
    _spent(timings, "request_wait", begun)
    work_begun = time.perf_counter()
    copies_s = _copies_s(out)
    if copies_s:  # the snapshots of `leaks`, counted beside the calls
        timings["snapshot_copies"] = copies_s
    chains = request["chains"]
    sites = [_site(key) for key in request["sites"]]
    names = [t["name"] for t in request["types"]]
    if not sites and not names:
        timings["evidence"] = timings["evidence_newness"] + time.perf_counter() - work_begun
        return {"sites": {}, "types": {}, "timings": timings}
    expected: dict[Any, float] = {_site(k): n for k, n in request.get("site_objects", {}).items()}
    expected.update(request.get("type_objects", {}))
    begun = time.perf_counter()
    found = refchain.Evidence(
        set(sites),
        set(names),
        set(request["grown_types"]),
        job.get("sample_budget_s", 1.0),
        expected,
        is_new,
    )
    _spent(timings, "evidence_samples", begun)
    groups = {f"site-{i + 1}": found.site_samples.get(s, []) for i, s in enumerate(sites[:chains])}
    origins: dict[str, tuple[str, int] | None] = {}
    for index, leak in enumerate(request["types"]):
        name, at_least = leak["name"], leak["largest_at_least"]
        if at_least is not None:
            # It grows without new objects: the objects that grew are the largest ones.
            origins[name], groups[f"type-{index + 1}"] = None, _largest(name, at_least)
        else:
            origins[name], groups[f"type-{index + 1}"] = found.type_samples(name, sites)
    owned = [str(name) for name in request.get("owned_types", [])]
    for index in range(len(owned)):
        groups[f"type-{len(names) + index + 1}"] = []  # chained through an owner, if any
    names = [*names, *owned]
    origins.update((name, None) for name in owned)
    if not traced:
        tracemalloc.stop()  # the samples are read: the search runs faster untraced
    # Else tracemalloc stays on, with this copy's own allocations untraced (`Tracer.restore`):
    # whether an object has a traceback still says the traced call made it.
    budget_s = job.get("chain_budget_s", 8.0)
    owners = None
    begun = time.perf_counter()
    if traced:  # the owners complete the backward search (`_owners`)
        search = refchain.search_backward(groups, budget_s, found.containers())
        _spent(timings, "evidence_chains", begun)
        begun = time.perf_counter()
        owners = _owners(
            search,
            groups,
            min(budget_s - search.elapsed(), OWNER_BUDGET_S),
            lambda g: _group_key(g, sites, names),
            int(request.get("growth_bytes", 0)),
            is_new,
            out,
            int(request.get("warmup", 0)),
        )
        search.settle()
        _spent(timings, "evidence_owners", begun)
    else:
        search = refchain.find_chains(groups, budget_s, found.containers())
        _spent(timings, "evidence_chains", begun)
    evidence: dict[str, Any] = {
        "sites": {},
        "types": {},
        "search": search.summary(),
        "timings": timings,
    }
    if owners is not None:
        evidence["owners"] = owners.result()
        evidence["traced_objects"] = owners.traced_objects()
    # tracemalloc is left on (stopped above when untraced): this copy allocates untraced
    # (`Tracer.restore`) and ends without cleanup; freeing 200,000 traces cost it 0.05 s.
    for index, site in enumerate(sites):
        evidence["sites"][f"{site[0]}:{site[1]}"] = {
            "type": found.dominant_type(site),
            "chain": _chain(search, f"site-{index + 1}"),
        }
    for index, name in enumerate(names):
        origin = origins[name]
        evidence["types"][name] = {
            "site": f"{origin[0]}:{origin[1]}" if origin else None,
            "chain": _chain(search, f"type-{index + 1}"),
        }
    timings["evidence"] = timings["evidence_newness"] + time.perf_counter() - work_begun
    return evidence


def _owners(
    search: Any,
    groups: dict[str, list[Any]],
    budget_s: float,
    label: Any,
    growth: int,
    is_new: Any,
    out: Path,
    warmup: int,
) -> Any:
    """Return the owners of the growth (`memdiag.measure.python.owners.Owners`), and complete the
    chain search with them.

    The owners along the chains the backward search found come first. A group whose
    samples (or, with none, whose type) an owner retains is chained through that owner, as
    what one call added under it; the forward walk looks only for the groups left. Then,
    while time is left, the old objects holding new objects no owner found so far retains
    (at least 1% of the call's `growth`), each with its own chain: one leak can have many
    owners.
    """
    from memdiag.measure.python import refchain
    from memdiag.measure.python.owners import Owners, growing_objects, table_growth
    from memdiag.measure.python.snapshot import type_name

    tables = table_growth(out, warmup)
    growing = growing_objects(tables, out)
    own = [groups, *groups.values(), growing]
    owners = Owners(is_new, {id(search), *search.own, *map(id, own)}, tables, growing)
    owners.add({label(g): p for g, p in search.paths.items()})
    _through_owners(search, groups, owners, label)
    walked = set(search.paths)
    search.walk_forward(groups)
    owners.add({label(g): p for g, p in search.paths.items() if g not in walked})
    deadline = time.monotonic() + budget_s
    owners = _prefer_growing(search, owners, own, label, deadline)
    for _ in range(OWNER_ROUNDS):
        if time.monotonic() > deadline or owners.retained() >= COVERED * growth:
            break
        pairs = owners.holders(refchain.START, max(growth // 100, 1), deadline)
        if not pairs:
            break
        extra = refchain.find_chains(
            {f"more-{i}": [holder] for i, (holder, _) in enumerate(pairs)},
            max(deadline - time.monotonic(), 0.5),
            [pairs, *own],
        )
        paths = {}
        for group, path in extra.paths.items():
            if group not in extra.fallback_only:
                held = pairs[int(group.split("-")[1])][1]
                paths[type_name(type(held))] = [*path, held]
        owners.add(paths)
    _through_owners(search, groups, owners, label)
    return owners


def _prefer_growing(search: Any, owners: Any, own: list[Any], label: Any, deadline: float) -> Any:
    """Return the owners with the peers that never let go first (`Owners.growing_peers`),
    and the chains of their groups through them: the owner named is the unbounded cache,
    not the bounded one beside it that holds only the newest of the same objects."""
    from memdiag.measure.python import refchain
    from memdiag.measure.python.owners import holds

    peers = owners.growing_peers()
    if not peers:
        return owners
    found = refchain.find_chains(
        {f"peer-{i}": [peer] for i, (peer, _, _, _) in enumerate(peers)},
        max(deadline - time.monotonic(), 0.5),
        [peers, *own],
    )
    first: dict[str, list[Any]] = {}
    for group, path in found.paths.items():
        if group in found.fallback_only:
            continue
        peer, sample, labels, stale = peers[int(group.split("-")[1])]
        for name in labels:
            first[name] = [*path, sample]
        # A group's own chain through the stale owner goes on from the peer where it can.
        for name, chain in list(search.paths.items()):
            at = next((i for i, obj in enumerate(chain) if id(obj) == stale), None)
            if label(name) in labels and at is not None and at + 1 < len(chain):
                if holds(peer, chain[at + 1]):
                    search.paths[name] = [*path, *chain[at + 1 :]]
                else:
                    search.paths[name] = [*path, sample]
                first[label(name)] = search.paths[name]
    if not first:
        return owners
    return owners.replayed(first)


def _through_owners(search: Any, groups: dict[str, list[Any]], owners: Any, label: Any) -> None:
    """Chain each group still without one through the owner that retains its samples (or,
    for a type without samples, one new object of the type)."""
    for group, samples in groups.items():
        if group in search.paths:
            continue
        found = owners.path_to(samples)
        if found is None and group.startswith("type-") and not samples:
            example = owners.of_type(label(group))
            found = owners.path_to([example]) if example is not None else None
        if found is not None:
            path, owner = found
            owners.add({label(group): path})  # its way down may say more of what one call adds
            search.paths[group] = path
            search.found_by[group] = (
                f"the owner {owner}, through what one call added under it, "
                f"in {search.elapsed():.1f} s"
            )


# Rounds of chain searches for growth no owner found so far retains, while the owners
# found retain less than COVERED of the call's growth, within OWNER_BUDGET_S seconds
# (everything here runs traced: tracemalloc says what the call allocated).
OWNER_ROUNDS = 3
COVERED = 0.8
OWNER_BUDGET_S = 3.0


def _group_key(group: str, sites: list[tuple[str, int]], names: list[str]) -> str:
    """Return `file:line` for "site-N", the type's name for "type-N"."""
    kind, _, number = group.partition("-")
    if kind == "site":
        filename, line = sites[int(number) - 1]
        return f"{filename}:{line}"
    return names[int(number) - 1]


def _largest(name: str, at_least: float, count: int = 5) -> list[Any]:
    """Return the largest live objects of the type `name` of at least `at_least` bytes.

    One object that grows (a buffer extended on every call) leaks without a traceback at
    the leaking line: its header was allocated once, often before tracing started.
    """
    import heapq
    import sys

    from memdiag.measure.python.snapshot import live_objects, type_name

    names: dict[type, str] = {}
    of_type = [
        obj
        for obj in live_objects()
        if (names.get(type(obj)) or names.setdefault(type(obj), type_name(type(obj)))) == name
        and sys.getsizeof(obj) >= at_least
    ]
    return heapq.nlargest(count, of_type, key=sys.getsizeof)


def _site(key: str) -> tuple[str, int]:
    filename, _, line = key.rpartition(":")
    return filename, int(line)


def _chain(search: Any, stem: str) -> dict[str, Any] | None:
    from memdiag.measure.python import refchain

    path = search.paths.get(stem)
    if path is None:
        return None
    chain = refchain.describe(path)
    chain["found_by"] = search.found_by.get(stem)
    return chain


_KIND = {"schema_version": SCHEMA_VERSION, "kind": "evidence"}
MODES = {"snapshot": run_snapshot, "leaks": run_leaks, "every": run_every}


def run_tracked(func: Any, spec: dict[str, Any]) -> int:
    """Run the mode `spec["extra"]` names under tracemalloc, started after the imports
    (`leaks` starts it itself, for its last call)."""
    job: Job = {**spec["extra"], "params": spec["params"]}
    if job.get("tracemalloc", job["mode"] != "leaks"):  # leaks traces its last call alone
        tracemalloc.start(job.get("frames", 8))
    try:
        return MODES[job["mode"]](func, job)
    finally:
        tracemalloc.stop()


if __name__ == "__main__":
    child_bootstrap.main(run_tracked, teardown=False)
