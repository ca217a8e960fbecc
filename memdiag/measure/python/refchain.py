"""Names what leaks, in the live child: the type allocated at a site, and who keeps it alive.

Standard library only. The type comes from `tracemalloc.get_object_traceback` over the live
objects: those whose allocating line is the leaking site. The chain of references that keeps
a sample of them alive is searched two ways, within one time budget:

- backward, from the samples towards a root: `gc.get_referrers` on the whole frontier of
  every group at once, one scan of the heap per level (a scan per object would cost the heap
  size per step). Named objects (classes, functions) are resolved by `__module__` and
  `__qualname__` without a scan: their referrers are every instance.
- forward, from the roots, breadth first, when the backward search found no root in time:
  containers only (str, int, bytes and other leaves are never queued).

Roots (`chainroots.py`): module globals, the locals of other threads' frames, signal handlers,
and, at the top of a backward search, `atexit` callbacks and objects that only C holds.
Each hop is named as Python would spell it (`chaintext.py`: `.attr`, `['key']`, `[3]`,
`.__self__`).
"""

from __future__ import annotations

import array
import gc
import math
import sys
import time
import tracemalloc
import types
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any

from memdiag.measure.python.chainroots import Root, RootIndex, unregistered_root
from memdiag.measure.python.chaintext import describe
from memdiag.measure.python.snapshot import type_name

__all__ = ["SAMPLES", "Evidence", "Search", "describe", "find_chains", "search_backward"]

SAMPLES = 20
# Objects scanned without a new sample after which a site short of samples has no more.
STALE = 16_384
# Samples each group starts the backward search from, and the most it keeps per level:
# get_referrers compares every pointer in the heap with each frontier object.
START = 4
WIDTH = 12
DEPTH = 40
# Objects that hold no references: never queued by the forward walk.
LEAVES = (str, bytes, int, float, complex, bool, type(None), bytearray, memoryview, range)
Site = tuple[str, int]


class Evidence:
    """Live objects grouped by allocating line: types per site, sample objects per type."""

    def __init__(
        self,
        sites: set[Site],
        type_names: set[str],
        grown: set[str],
        budget_s: float = 30.0,
        expected: dict[Any, float] | None = None,
        is_new: Callable[[Any], bool] | None = None,
    ) -> None:
        """Group the live objects of the `grown` types (tracing must still be on).

        Newest objects first, and only until every site and type has its samples or
        `budget_s` seconds have passed: under tracemalloc every allocation of the scan is
        itself traced, and the leaking objects are among the newest. `expected` is how many
        new objects a site or type name has, when known: no more samples are looked for.
        With `is_new` (a test of whether the traced call made an object), a new object
        without a traceback is a sample of its type still, of no site: tracemalloc cannot
        trace every object, nor any in a call traced in slices.
        """
        self.wanted = {
            key: max(1, min(SAMPLES, math.ceil(count))) for key, count in (expected or {}).items()
        }
        self.site_types: dict[Site, dict[str, int]] = {s: {} for s in sites}
        self.site_samples: dict[Site, list[Any]] = {s: [] for s in sites}
        self.type_sites: dict[str, dict[Site | None, list[Any]]] = {t: {} for t in type_names}
        self.scanned = 0
        self.last_added = 0
        names: dict[type, str] = {}
        deadline = time.perf_counter() + budget_s
        objects = _newest_first(grown, names, is_new)
        for obj in objects:
            self.scanned += 1
            if self.scanned % 4096 == 0 and (
                self._full() or self._stale() or time.perf_counter() > deadline
            ):
                break
            raw = raw_traceback(obj)
            name = names[type(obj)]
            if raw:
                site: Site | None = raw[0]  # the raw form is most recent first: the line
            elif is_new is not None and name in self.type_sites and is_new(obj):
                site = None
            else:
                continue
            if site in self.site_types:
                sizes = self.site_types[site]
                sizes[name] = sizes.get(name, 0) + sys.getsizeof(obj)
                if len(self.site_samples[site]) < SAMPLES:
                    self.site_samples[site].append(obj)
                    self.last_added = self.scanned
            if name in self.type_sites:
                held = self.type_sites[name].setdefault(site, [])
                if len(held) < SAMPLES:
                    held.append(obj)
                    self.last_added = self.scanned
        objects.close()  # its list of every tracked object would be a holder of everything

    def _full(self) -> bool:
        sites_full = all(
            len(held) >= self.wanted.get(site, SAMPLES) for site, held in self.site_samples.items()
        )
        return sites_full and self._types_full()

    def _types_full(self) -> bool:
        return all(
            any(len(h) >= self.wanted.get(name, SAMPLES) for h in by_site.values())
            for name, by_site in self.type_sites.items()
        )

    def _stale(self) -> bool:
        """Every type has its samples and the last STALE objects scanned gave none more: a
        site still short of samples has no more objects (a buffer, not an object)."""
        return self.scanned - self.last_added >= STALE and self._types_full()

    def dominant_type(self, site: Site) -> str | None:
        """Return the type holding the most bytes among the objects allocated at `site`."""
        sizes = self.site_types.get(site) or {}
        return max(sizes, key=lambda n: sizes[n]) if sizes else None

    def type_samples(self, name: str, leaking: list[Site]) -> tuple[Site | None, list[Any]]:
        """Return the site the objects of `name` most likely leak from, and some of them.

        A leaking site's objects first; else the site holding the most objects of the type.
        """
        by_site = self.type_sites.get(name) or {}
        for site in leaking:
            if by_site.get(site):
                return site, by_site[site]
        traced = [s for s in by_site if s is not None]
        if not traced:
            return None, by_site.get(None, [])
        site = max(traced, key=lambda s: len(by_site[s]))
        return site, by_site[site]

    def containers(self) -> list[Any]:
        """Return memdiag's own containers of samples: never a holder in a chain."""
        return [
            self.site_types,
            self.site_samples,
            self.type_sites,
            *self.site_samples.values(),
            *self.type_sites.values(),
            *(held for by_site in self.type_sites.values() for held in by_site.values()),
        ]


def _newest_first(
    grown: set[str], names: dict[type, str], is_new: Callable[[Any], bool] | None = None
) -> Generator[Any, None, None]:
    """Yield the live objects of the `grown` types, newest first, each once.

    The collector's list ends with the newest objects; the untracked ones (str, int,
    bytes, and tuples of them) come with the tracked objects that refer to them. With the
    compiled `is_new` (`_heapwalk.Newness`), of a container of thousands of referents only
    the untracked ones the traced call made (the only ones a sample can be) and the tuples
    and dicts they may be in: a set of millions of old strings is not listed, nor its pages
    copied in this forked copy, to find its new ones.
    """
    tracked = gc.get_objects()
    seen: set[int] = set()
    sample = getattr(is_new, "sample_referents", None)

    def referents(obj: Any) -> list[Any]:
        return sample(obj, seen) if sample is not None else gc.get_referents(obj)

    def wanted(obj: Any) -> bool:
        kind = type(obj)
        name = names.get(kind) or names.setdefault(kind, type_name(kind))
        return name in grown

    for index in range(len(tracked) - 1, -1, -1):
        obj = tracked[index]
        if wanted(obj):
            yield obj
        for ref in referents(obj):
            if gc.is_tracked(ref) or id(ref) in seen:
                continue
            if type(ref) in (tuple, dict):
                seen.add(id(ref))
                inner = [r for r in referents(ref) if not gc.is_tracked(r)]
                for item in inner:
                    if id(item) not in seen and wanted(item):
                        seen.add(id(item))
                        yield item
            if wanted(ref):
                seen.add(id(ref))
                yield ref


def _hits_among(wanted: set[int]) -> Callable[[Any], Iterable[int]]:
    """Return a function from a holder to the ids in `wanted` of its referents: by the
    compiled loop where built, which lists none of them (a set of millions of strings in
    this forked copy: no page of them written)."""
    try:
        from memdiag.measure.python import _heapwalk
    except ImportError:
        return lambda holder: wanted.intersection(map(id, gc.get_referents(holder)))
    sought = array.array("Q", sorted(wanted)).tobytes()
    return lambda holder: _heapwalk.referents_in(holder, sought)


def traceback_reader() -> Callable[[Any], Any]:
    """Return the fastest function from an object to its traceback's frames or None:
    tracemalloc's own where it has one (no Python frame between, millions of calls)."""
    return _get_raw if _get_raw is not None else raw_traceback


def raw_traceback(obj: Any) -> tuple[Site, ...] | None:
    """Return the frames tracemalloc traced `obj`'s allocation at, None when it did not."""
    # The raw tuple, without the Traceback and Frame wrappers: this runs for every live
    # object of the grown types, a few hundred thousand times.
    if _get_raw is not None:
        frames: tuple[Site, ...] | None = _get_raw(obj)
        return frames
    tb = tracemalloc.get_object_traceback(obj)
    return tuple((f.filename, f.lineno) for f in reversed(tb)) if tb is not None else None


_get_raw = getattr(tracemalloc, "_get_object_traceback", None)


def is_traced(obj: Any) -> bool:
    """Return whether tracemalloc traced the allocation of `obj` (tracing must be on)."""
    return raw_traceback(obj) is not None


class Search:
    """One chain search over every group: the paths found, how, and what was searched.

    `paths[group]` is [Root, first held object, ..., sample]; `found_by[group]` says which
    walk found it and how long the search had run (seconds).
    """

    def __init__(self, budget_s: float, roots: RootIndex, own: Iterable[Any]) -> None:
        self.started = time.perf_counter()
        self.deadline = self.started + budget_s
        self.roots = roots
        self.own = {id(o) for o in own}
        self.paths: dict[str, list[Any]] = {}
        self.found_by: dict[str, str] = {}
        # Per group, a chain ending at an object nothing tracked refers to: shown only when
        # no walk reached a root.
        self.fallback: dict[str, list[Any]] = {}
        # The groups whose path is such a fallback (it reaches no root).
        self.fallback_only: set[str] = set()
        self.levels = 0
        self.scanned = 0
        self.walked = 0
        self.samples = 0

    def elapsed(self) -> float:
        """Return the seconds since the search started."""
        return time.perf_counter() - self.started

    def walk_forward(self, groups: dict[str, list[Any]]) -> None:
        """Walk forward from the roots for the `groups` still without a chain, in time left."""
        missing = {g: t for g, t in groups.items() if g not in self.paths and t}
        if missing and time.perf_counter() < self.deadline:
            _forward(self, missing)

    def settle(self) -> None:
        """Give each group still without a chain its fallback (a chain that reaches no root)."""
        for group, path in self.fallback.items():
            if group not in self.paths:
                self.paths[group] = path
                self.found_by[group] = _how(self, "backward search")
                self.fallback_only.add(group)

    def summary(self) -> str:
        """Return what was searched, for a group with no chain."""
        return (
            f"backward search from {self.samples} samples, {self.levels} levels "
            f"(each a scan of {self.scanned:,} tracked objects); forward walk over "
            f"{self.walked:,} containers from {len(self.roots.names)} modules; "
            f"{self.elapsed():.1f} s"
        )


def find_chains(
    groups: dict[str, list[Any]], budget_s: float = 8.0, own: Iterable[Any] = ()
) -> Search:
    """Return the search for a chain from a root to one sample of each group.

    `own` are the caller's containers of samples, never holders. Backward first, then the
    forward walk for the groups still without a chain, both within `budget_s` seconds.
    """
    search = search_backward(groups, budget_s, own)
    search.walk_forward(groups)
    search.settle()
    return search


def search_backward(
    groups: dict[str, list[Any]], budget_s: float = 8.0, own: Iterable[Any] = ()
) -> Search:
    """Return the search after its backward part alone (the cheap one): the caller may
    find the other groups' chains another way before `walk_forward` and `settle`."""
    roots = RootIndex.build()
    search = Search(budget_s, roots, [groups, *groups.values(), *own])
    search.scanned = len(gc.get_objects())
    _backward(search, groups)
    return search


def _backward(search: Search, groups: dict[str, list[Any]]) -> None:
    """Search from the samples towards the roots, every group's frontier in one scan a level.

    Per group: `objs` maps id to object (the only container of them, left out of the
    referrers), `towards[group][id]` the id of the next object on the way to the sample.
    """
    objs: dict[int, Any] = {}
    towards: dict[str, dict[int, int | None]] = {g: {} for g in groups}
    frontier: dict[str, list[int]] = {}
    search.own.update({id(objs), id(towards), id(frontier)})
    for group, samples in groups.items():
        for sample in samples[:START]:
            objs[id(sample)] = sample
            towards[group][id(sample)] = None
        frontier[group] = [id(s) for s in samples[:START]]
        search.samples += len(frontier[group])
    tops: dict[str, list[int]] = {g: [] for g in groups}  # objects nothing tracked refers to
    while any(frontier.values()) and search.levels < DEPTH:
        if time.perf_counter() > search.deadline:
            break
        for group in list(frontier):
            frontier[group] = [
                i for i in frontier[group] if not _ends(search, group, i, objs, towards)
            ]
        ids = sorted({i for f in frontier.values() for i in f})
        if not ids:
            break
        wanted = tuple(objs[i] for i in ids)
        search.own.add(id(wanted))
        referrers = gc.get_referrers(*wanted)
        search.levels += 1
        held = _held_by(search, referrers, set(ids))
        search.own.discard(id(wanted))
        referrers.clear()  # emptied, not only dropped: a name left bound must hold nothing
        del wanted
        for group in list(frontier):
            following: list[int] = []
            for i in frontier[group]:
                holders = held.get(i, [])
                if not holders:
                    tops[group].append(i)
                for holder in holders:
                    hid = id(holder)
                    if hid in towards[group] or len(following) >= WIDTH:
                        continue
                    objs[hid] = holder
                    towards[group][hid] = i
                    following.append(hid)
            frontier[group] = following
            if group in search.paths:
                frontier[group] = []
        for holders in held.values():
            holders.clear()
        del held
    for group, ends in tops.items():
        if group in search.paths:
            continue
        for i in ends[:WIDTH]:
            root = unregistered_root(objs[i])
            path = _unwind(root, i, towards[group], objs)
            if root.kind != "unreachable":
                search.paths[group] = path
                search.found_by[group] = _how(search, "backward search")
                break
            search.fallback.setdefault(group, path)


def _ends(
    search: Search, group: str, i: int, objs: dict[int, Any], towards: dict[str, dict[int, Any]]
) -> bool:
    """Record the path when object `i` is a root or a named object; True to stop there."""
    if group in search.paths:
        return True
    obj = objs[i]
    root = search.roots.root_of(obj)
    if root is None:
        return False
    search.paths[group] = _unwind(root, i, towards[group], objs)
    search.found_by[group] = _how(search, "backward search")
    return True


def _how(search: Search, walk: str) -> str:
    if walk == "backward search":
        return f"backward search from {search.samples} samples in {search.elapsed():.1f} s"
    return f"forward walk from modules in {search.elapsed():.1f} s"


def _held_by(search: Search, referrers: list[Any], wanted: set[int]) -> dict[int, list[Any]]:
    """Return, per wanted id, the referrers that hold it (not memdiag's, not as a type)."""
    held: dict[int, list[Any]] = {}
    own_frames = _own_frames()
    hits_of = _hits_among(wanted)
    for holder in referrers:
        hid = id(holder)
        if hid in search.own or hid in own_frames or search.roots.is_excluded(holder):
            continue
        if isinstance(holder, types.FrameType) and holder.f_code.co_filename.startswith(_OWN):
            continue
        hits = set(hits_of(holder))
        hits.discard(id(type(holder)))  # an instance refers to its class: that holds nothing
        for hit in hits:
            held.setdefault(hit, []).append(holder)
    return held


def _own_frames() -> set[int]:
    frames: set[int] = set()
    frame: types.FrameType | None = sys._getframe()
    while frame is not None:
        frames.add(id(frame))
        frame = frame.f_back
    return frames


_OWN = __file__.rsplit("/", 1)[0]


def _unwind(
    root: Root, start: int, towards: dict[int, int | None], objs: dict[int, Any]
) -> list[Any]:
    """Return [root, *objects from `start` down to the sample]."""
    path: list[Any] = [root, *root.prefix]
    node: int | None = start
    while node is not None:
        if not (path[-1:] and path[-1] is objs[node]):
            path.append(objs[node])
        node = towards[node]
    return path


def _forward(search: Search, groups: dict[str, list[Any]]) -> None:
    """Breadth first from every root over containers only, until each group has a path."""
    wanted: dict[int, list[str]] = {}
    for group, targets in groups.items():
        for target in targets:
            wanted.setdefault(id(target), []).append(group)
    parent: dict[int, int | None] = {}
    seen: dict[int, Any] = {}
    starts: dict[int, Root] = {}
    queue: deque[Any] = deque()
    search.own.update({id(parent), id(seen), id(queue), id(wanted)})
    for root, first in search.roots.starts():
        if id(first) in seen:
            continue
        seen[id(first)], parent[id(first)], starts[id(first)] = first, None, root
        queue.append(first)
    found = 0
    while queue and found < len(groups):
        if search.walked % 4096 == 0 and time.perf_counter() > search.deadline:
            break
        obj = queue.popleft()
        search.walked += 1
        for ref in gc.get_referents(obj):
            rid = id(ref)
            if (
                rid in seen
                or rid in search.own
                or isinstance(ref, types.FrameType | types.ModuleType)
            ):
                continue
            seen[rid], parent[rid] = ref, id(obj)
            for group in wanted.get(rid, ()):
                if group not in search.paths:
                    search.paths[group] = _forward_path(rid, parent, seen, starts)
                    search.found_by[group] = _how(search, "forward walk")
                    found += 1
            if not isinstance(ref, LEAVES):
                queue.append(ref)


def _forward_path(
    rid: int, parent: dict[int, int | None], seen: dict[int, Any], starts: dict[int, Root]
) -> list[Any]:
    path = []
    node: int | None = rid
    last = rid
    while node is not None:
        path.append(seen[node])
        last = node
        node = parent[node]
    root = starts[last]
    return [root, *root.prefix, *[p for p in path[::-1] if not any(p is q for q in root.prefix)]]
