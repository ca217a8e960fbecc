"""The leak rule, once for memdiag: when a series of memory figures counts as growing.

One rule decides for `memdiag leaks` (allocation sites, object types and RSS, one point per
iteration or interval), the pytest plugin's leak check (allocation lines, one point per run
of the test body) and the monitor's trend (RSS over time, `memdiag.analysis.trend`). Its
thresholds are `LeakSettings`; `grows` applies them to a series' `Trend`. docs/leaks.md
("The rule") is where it is documented; every other page links there.

A series grows when, after the warm-up,

- it grew in nearly every interval: at least `growth_share` (80%) of them, and at least
  `min_intervals` (3);
- its least-squares slope (`memdiag.analysis.fit`) is at least `min_growth_bytes` per
  iteration: 64 KB by default.

The series is a size in bytes: one object that grows (a buffer extended on every call)
leaks as surely as a new object per call, so the number of objects is reported, never
required. Caches that warm up (`re`, `typing`, SQLAlchemy's compiled statements) grow in
the first calls and then stop: after warm-up they grow in few intervals. Free lists and
allocator pools change RSS, not live objects. Per-call churn is collected before each
snapshot. What remains, growing call after call, is held by something that outlives the call.

Native growth: RSS that grows by the rule with `native_min_bytes` (1 MB) as its floor, more
than the Python heap (tracemalloc's traced memory and its own overhead) grows, and by at
least half the Python heap's own growth: memory that no Python allocation accounts for.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from memdiag.analysis.fit import fit_line
from memdiag.model import LeakReport, NativeGrowth, Owner, SiteLeak, Snapshot, TypeLeak

KB, MB = 1024, 1024 * 1024


@dataclass(frozen=True)
class LeakSettings:
    """The leak rule's thresholds (see the module docstring and docs/leaks.md).

    `warmup` points are left out first; `min_growth_bytes` is the smallest least-squares
    slope per step (bytes per iteration), `growth_share` and `min_intervals` how many steps
    must rise; `native_min_bytes` is the floor for RSS growth beyond the Python heap.
    """

    warmup: int = 2
    min_growth_bytes: int = 64 * KB
    growth_share: float = 0.8
    min_intervals: int = 3
    native_min_bytes: int = 1 * MB


@dataclass(frozen=True)
class Trend:
    """A series' growth: least-squares slope per x unit (`per_step`), how many steps rose."""

    per_step: float
    grew: int
    steps: int
    first: float
    last: float


def trend(values: Sequence[float], xs: Sequence[float] | None = None) -> Trend:
    """Return the least-squares slope of `values` per x unit and the number of steps that grew.

    `xs` defaults to the step number (0, 1, 2, ...): the slope is then per iteration.
    """
    n = len(values)
    steps = n - 1
    if steps < 1:
        return Trend(0.0, 0, 0, values[0] if values else 0.0, values[-1] if values else 0.0)
    slope = fit_line(range(n) if xs is None else xs, values).slope
    grew = sum(1 for a, b in itertools.pairwise(values) if b > a)
    return Trend(slope, grew, steps, values[0], values[-1])


def grows(t: Trend, settings: LeakSettings, min_slope: float | None = None) -> bool:
    """Return whether a series' Trend grows by the leak rule.

    It grew in at least `growth_share` of its steps and at least `min_intervals` of them,
    and its slope is at least `min_slope` per x unit (`settings.min_growth_bytes` unless
    given: the caller passes another floor for RSS, or for x in seconds).
    """
    floor = settings.min_growth_bytes if min_slope is None else min_slope
    needed = max(settings.min_intervals, math.ceil(settings.growth_share * t.steps))
    return t.steps >= settings.min_intervals and t.grew >= needed and t.per_step >= floor


def _series(
    snaps: Sequence[Snapshot], pick: Callable[[Snapshot], dict[str, Any]]
) -> dict[str, list[Any]]:
    """Return {key: [entry or None per snapshot]} for every key seen in any snapshot."""
    table: dict[str, list[Any]] = {}
    for i, snap in enumerate(snaps):
        for key, entry in pick(snap).items():
            table.setdefault(key, [None] * len(snaps))[i] = entry
    return table


def site_leaks(snaps: Sequence[Snapshot], settings: LeakSettings) -> list[SiteLeak]:
    """Return the allocation sites that leak, largest growth per iteration first."""
    found = []
    for key, entries in _series(snaps, lambda s: {x.key: x for x in s.sites}).items():
        size = trend([e.size_bytes if e else 0 for e in entries])
        if not grows(size, settings):
            continue
        count = trend([e.count if e else 0 for e in entries])
        last = next(e for e in reversed(entries) if e)
        found.append(
            SiteLeak(
                key,
                last.traceback,
                round(size.per_step, 1),
                round(count.per_step, 2),
                last.size_bytes,
                last.count,
                size.grew,
                size.steps,
            )
        )
    return sorted(found, key=lambda x: -x.bytes_per_iteration)


def type_leaks(snaps: Sequence[Snapshot], settings: LeakSettings) -> list[TypeLeak]:
    """Return the object types that leak, largest growth per iteration first."""
    found = []
    for name, entries in _series(snaps, lambda s: {t.name: t for t in s.types}).items():
        size = trend([e.size_bytes if e else 0 for e in entries])
        if not grows(size, settings):
            continue
        count = trend([e.count if e else 0 for e in entries])
        last = next(e for e in reversed(entries) if e)
        found.append(
            TypeLeak(
                name,
                round(count.per_step, 2),
                round(size.per_step, 1),
                last.count,
                last.size_bytes,
                size.grew,
                size.steps,
            )
        )
    return sorted(found, key=lambda x: -x.bytes_per_iteration)


def traced_last(snaps: Sequence[Snapshot]) -> bool:
    """Return whether only the last snapshot has sites, taken after the only traced call
    (`memdiag leaks` traces its last call alone)."""
    return bool(snaps[-1].frames) and not any(s.frames or s.sites for s in snaps[:-1])


def traced_sites(
    last: Snapshot, settings: LeakSettings, heap: Trend, share: float | None = None
) -> list[SiteLeak]:
    """Return the sites of a snapshot taken after the only traced call, largest first.

    Tracing started with that call: what its sites still hold after it (garbage collected)
    is what one call added and kept, so each site of at least `min_growth_bytes` is one
    call's growth. Whether anything grows at all is the rule's, on the untraced series.
    A buffer that grew in place was reallocated whole by the call: no site grew by more
    than the Python heap did per call (`heap`), and a site held well above that is such a
    buffer, no new object; its live size is what the site holds.
    """
    cap = heap.per_step if heap.per_step > 0 else float("inf")
    found = []
    for s in last.sites:
        size, count = float(s.size_bytes), float(s.count)
        if share and s.small_bytes is not None and s.small_count is not None:
            # the small blocks are a sample of the call's; the large ones were traced whole
            size += s.small_bytes * (1 / share - 1)
            count += s.small_count * (1 / share - 1)
        elif share and size <= SMALL_ALLOCATION * max(count, 1):
            size, count = size / share, count / share  # a sample of the call's small ones
        if size < settings.min_growth_bytes:
            continue
        grown = size > REALLOCATED_ABOVE * cap
        per_call = round(cap if grown else size, 1)
        objects = 0 if grown else round(count)
        found.append(
            SiteLeak(s.key, s.traceback, per_call, objects, round(size), round(count), 1, 1)
        )
    return sorted(found, key=lambda x: -x.bytes_per_iteration)


# A site holding more than this many times the heap's growth per call was a buffer grown in
# place (reallocated whole by the call). Below it, the call's own variation: an interval of a
# running process traced for `--every` seconds holds a few percent more or less than the
# heap's trend per interval.
REALLOCATED_ABOVE = 1.5
# pymalloc serves allocations up to this size; larger ones go to the raw allocator, which
# tracemalloc traces throughout even when the call is traced in slices.
SMALL_ALLOCATION = 512


def sampled_share(last: Snapshot, evidence: dict[str, Any]) -> float | None:
    """Return the share of the traced call's small allocations that were traced, None when
    it was traced whole.

    Measured on the new objects the owners retain: how many of those tracemalloc could
    trace it did (`traced_objects`, from the child). Without enough of them, the share of
    the call's time traced, which overstates it (a traced slice runs slower).
    """
    if last.traced_share is None:
        return None
    traced, of = evidence.get("traced_objects") or (0, 0)
    if of >= MIN_TRACEABLE and traced:
        return round(min(traced / of, 1.0), 4)
    return last.traced_share


# The fewest traceable new objects from which the share traced is measured.
MIN_TRACEABLE = 100


def heap_trend(snaps: Sequence[Snapshot]) -> Trend:
    """Return the Python heap's trend (a heap not measured counts as 0)."""
    return trend([s.heap_bytes or 0 for s in snaps])


def native_growth(snaps: Sequence[Snapshot], settings: LeakSettings) -> NativeGrowth | None:
    """Return the RSS growth no Python allocation accounts for, None when there is none.

    Not counting the snapshot after a traced last call: tracemalloc's tables for everything
    the call had live at once stay in the process's RSS after it (the allocator keeps them),
    which is not the job's.
    """
    if len(snaps) > 2 and traced_last(snaps):
        snaps = snaps[:-1]
    rss = trend([s.rss_bytes for s in snaps])
    python = [(s.heap_bytes or 0) + (s.tracemalloc_bytes or 0) for s in snaps]
    heap = trend(python)
    native = rss.per_step - max(heap.per_step, 0.0)
    if not grows(rss, settings, settings.native_min_bytes) or native < settings.native_min_bytes:
        return None
    if native < 0.5 * heap.per_step:
        return None
    return NativeGrowth(
        round(rss.per_step), round(heap.per_step), round(native), rss.grew, rss.steps
    )


def grown_types(snaps: Sequence[Snapshot]) -> set[str]:
    """Return the names of the types with more live objects in the last snapshot than the first."""
    if len(snaps) < 2:
        return set()
    first = {t.name: t.count for t in snaps[0].types}
    return {t.name for t in snaps[-1].types if t.count > first.get(t.name, 0)}


def find_leaks(
    snaps: Sequence[Snapshot],
    settings: LeakSettings | None = None,
    evidence: dict[str, Any] | None = None,
    unit: str = "iteration",
) -> LeakReport:
    """Return the leaks in `snaps` (one per iteration), warm-up snapshots left out.

    `evidence` (from the measured child) names the type at each site and the reference
    chains: {"sites": {site: {"type", "chain"}}, "types": {name: {"site", "chain"}}}.
    """
    settings = settings or LeakSettings()
    if not snaps:
        raise ValueError("no snapshots to look for leaks in")
    window = _window(snaps, settings)
    report = LeakReport(
        target=snaps[0].target,
        params=dict(snaps[0].params),
        snapshots=len(snaps),
        warmup=settings.warmup,
        unit=unit,
        settings=asdict(settings),
        rss_first_bytes=window[0].rss_bytes,
        rss_last_bytes=window[-1].rss_bytes,
        heap_first_bytes=window[0].heap_bytes,
        heap_last_bytes=window[-1].heap_bytes,
        types=type_leaks(window, settings),
        native=native_growth(window, settings),
    )
    heap = heap_trend(window)
    report.traced_whole = window[-1].traced_whole
    if not traced_last(window):
        report.sites = site_leaks(window, settings)  # every snapshot has sites: a series each
    elif report.types or (report.heap_first_bytes is not None and grows(heap, settings)):
        report.traced_share = sampled_share(window[-1], evidence or {})
        report.sites = traced_sites(window[-1], settings, heap, report.traced_share)
    _attach(report, evidence or {}, heap.per_step)
    return report


def _window(snaps: Sequence[Snapshot], settings: LeakSettings) -> list[Snapshot]:
    """Return the snapshots after the warm-up (the last one when there are no more)."""
    return list(snaps[settings.warmup :]) if len(snaps) > settings.warmup else list(snaps[-1:])


def _attach(report: LeakReport, evidence: dict[str, Any], heap_per_step: float = 0.0) -> None:
    for site in report.sites:
        found = evidence.get("sites", {}).get(site.site, {})
        site.type, site.chain = found.get("type"), found.get("chain")
    for kind in report.types:
        found = evidence.get("types", {}).get(kind.name, {})
        kind.site, kind.chain = found.get("site"), found.get("chain")
    if "owners" in evidence:
        report.owners, report.growth_bytes_per_iteration = owners(
            evidence["owners"], heap_per_step, report.types
        )


def owners(
    found: list[dict[str, Any]], heap_per_step: float, types: Sequence[TypeLeak]
) -> tuple[list[Owner], float]:
    """Return the owners the child found, with their share of one call's growth, and that
    growth: the Python heap's per call (live objects' sizes, as the retained sizes are),
    never less than what the owners retain. An owner that grew in place retains no new
    object: its growth is its type's, from the series. An owner whose own table grew (a set
    or dict resized as it fills) adds that growth to its new members'."""
    growth_of = {t.name: t.bytes_per_iteration for t in types}
    result = []
    for entry in found:
        retained = float(entry["retained_bytes"])
        table = float(entry.get("table_bytes") or 0.0)
        if entry["in_place"]:
            grown = [growth_of.get(g, 0.0) for g in entry["groups"]]
            retained = max([retained, table, *grown])
        else:
            retained += table
        result.append(
            Owner(
                expression=entry["expression"],
                root=entry["root"],
                type=entry["type"],
                retained_bytes_per_iteration=retained,
                retained_objects_per_iteration=entry["retained_objects"],
                share=0.0,
                groups=list(entry["groups"]),
                path=list(entry["path"]),
                largest_types=list(entry["largest_types"]),
                in_place=entry["in_place"],
                truncated=entry["truncated"],
                table_site=entry.get("table_site"),
                stored_site=entry.get("stored_site"),
                table_bytes_per_iteration=round(table, 1),
            )
        )
    total = max(heap_per_step, sum(o.retained_bytes_per_iteration for o in result))
    for owner in result:
        owner.share = round(owner.retained_bytes_per_iteration / total, 4) if total else 0.0
    result.sort(key=lambda o: -o.retained_bytes_per_iteration)
    return result, total


# How many leading leaks get a reference chain (twice as many sites get their type named).
CHAINS = 3


def _largest_at_least(leak: TypeLeak, settings: LeakSettings) -> float | None:
    """Return the size from which a type's largest objects are the ones that grew, None
    when its growth is many small new objects (sampled by their allocating site).

    No new object per call: the objects that grew did so in place (by at least half the
    window's growth). New objects of `min_growth_bytes` each on average: few large ones
    carry the growth (the type's other objects come and go around them).
    """
    if leak.objects_per_iteration < 1:
        return leak.bytes_per_iteration * leak.intervals / 2
    each = leak.bytes_per_iteration / leak.objects_per_iteration
    return each / 2 if each >= settings.min_growth_bytes else None


# Traced in slices, the sites whose objects are sampled: those of at least this fraction of
# the growth threshold, as scaled by the share of the call's time traced.
SLICED_MARGIN = 4


def attribution_request(
    snaps: Sequence[Snapshot], settings: LeakSettings, chains: int = CHAINS
) -> dict[str, Any]:
    """Return what the measured child should name in its live process, as JSON data.

    `sites`: the leading leaking sites (`file:line`, 2 × `chains`), whose type it names, the
    first `chains` with a reference chain; `types`: the leading leaking types, each with
    `largest_at_least` (bytes) when it grows without new objects (its largest objects are
    the ones that grew), else None (sample the objects allocated at its sites);
    `owned_types`: the next leaking types, chained only through an owner that retains
    them (no search of their own); `site_objects` and `type_objects`: how many new objects
    each adds per call (no more samples are looked for);
    `grown_types`: the types with more live objects at the end, the only ones scanned;
    `growth_bytes`: the Python heap's growth per call, which the owners share out.
    """
    report = find_leaks(snaps, settings)
    types = [
        {
            "name": leak.name,
            "largest_at_least": _largest_at_least(leak, settings),
        }
        for leak in report.types[:chains]
    ]
    window = _window(snaps, settings)
    heap = heap_trend(window)
    candidates = report.sites
    if report.traced_share is not None:
        # Traced in slices, a site's size here is scaled by the share of the call's time
        # traced, which can overstate the share of its objects twice over (0.86 against 0.40
        # on record-sync): a site below the threshold now can pass it once the child has
        # measured the share. Its objects are sampled too; the report decides.
        lower = replace(settings, min_growth_bytes=settings.min_growth_bytes // SLICED_MARGIN)
        candidates = traced_sites(window[-1], lower, heap, report.traced_share)
    # A site that adds no object (a buffer grown in place) has no object to sample.
    leading = [leak for leak in candidates[: chains * 2] if leak.objects_per_iteration > 0]
    sites = [leak.site for leak in leading]
    grown = sorted(grown_types(snaps[settings.warmup :])) if sites or types else []
    growth = heap.per_step
    return {
        "chains": chains,
        "sites": sites,
        "types": types,
        "owned_types": [leak.name for leak in report.types[chains : chains * 3]],
        "site_objects": {leak.site: leak.objects_per_iteration for leak in leading},
        "type_objects": {
            leak.name: leak.objects_per_iteration
            for leak in report.types[:chains]
            if leak.objects_per_iteration >= 1
        },
        "grown_types": grown,
        "growth_bytes": max(round(growth), 0),
        "warmup": settings.warmup,
    }
