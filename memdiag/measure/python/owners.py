"""Groups one call's growth by the object that retains it, in the live child.

Runs in the forked copy of `memdiag leaks`'s child after the last call, which ran under
tracemalloc (`new_since` says which objects that call created). On each reference chain found
from a root to a leaking object, the owner is the last old object: the structure that was
there before the call and now holds what the call added (a list of handlers, a cache, a
set of processed keys). An owner retains the new objects reachable from it through new
objects only, each counted once, by the first owner that reaches it: the call's growth
under that owner, as heap-snapshot tools' "retained size", per call.

An object that grew in place (a buffer extended every call) is its own owner; it retains
nothing new, and memdiag fills its growth in from the object type's series.
Standard library only.
"""

from __future__ import annotations

import bisect
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memdiag.measure.python.chaintext import describe
from memdiag.measure.python.refchain import is_traced, traceback_reader
from memdiag.measure.python.snapshot import type_name
from memdiag.measure.python.untraced import read_ids

# The most new objects walked under one owner: a bound on the copy's time, reported.
MAX_RETAINED = 2_000_000


class Owners:
    """The owners found so far, and the new objects they retain (each claimed once).

    `tables`: {id: bytes per call} of the old objects whose own size grew over the snapshots
    (`table_growth`): an owner among them is credited with that growth too.
    """

    def __init__(
        self,
        is_new: Callable[[Any], bool],
        own: set[int],
        tables: dict[int, float] | None = None,
        growing: list[Any] | None = None,
    ) -> None:
        self.is_new = is_new
        self.tables = tables or {}
        self.growing = growing or []  # the objects of `tables` (`growing_objects`)
        self.own = set(own)
        self.added: list[dict[str, list[Any]]] = []  # what `add` was given, in order
        self.claimed: set[int] = set(own)
        self.found: dict[Any, dict[str, Any]] = {}
        self.counts: dict[Any, dict[str, tuple[int, int]]] = {}
        self.tree = _Tree()

    def add(self, paths: dict[str, list[Any]]) -> None:
        """Add the owners of the chains in `paths` (label → [Root, objects..., sample])."""
        self.added.append(paths)
        for label, path in paths.items():
            objects = path[1:]
            index = _last_old(objects, self.is_new)
            owner = objects[index] if index is not None else None
            key: Any = id(owner) if owner is not None else path[0].expression
            below = objects[index + 1 :] if index is not None else objects
            if key not in self.found:
                chain = describe(path[: index + 2] if index is not None else path[:1])
                self.tree.prefix[key] = path[: index + 2] if index is not None else path[:1]
                counts, retained, truncated = _retained(
                    below[:1] if owner is None else _Referents(owner),
                    self.is_new,
                    self.claimed,
                    self.claimed,
                    (self.tree, key),
                )
                self.counts[key] = counts
                largest = sorted(counts.items(), key=lambda kv: -kv[1][1])[:5]
                self.found[key] = {
                    "expression": chain["expression"],
                    "root": chain["root"],
                    "type": type_name(type(owner))
                    if owner is not None
                    else chain["hops"][0]["type"],
                    "groups": [],
                    "in_place": index is not None and index == len(objects) - 1,
                    "retained_bytes": retained,
                    "retained_objects": sum(c for c, _ in counts.values()),
                    "truncated": truncated,
                    "path": [],
                    "largest_types": [
                        {"type": name, "count": count, "size_bytes": size}
                        for name, (count, size) in largest
                    ],
                    "table_site": table_site(owner) if owner is not None else None,
                    "table_bytes": self.tables.get(key, 0.0) if owner is not None else 0.0,
                    "stored_site": _stored_site(self.tree.held.get(key, []), self.is_new),
                }
            entry = self.found[key]
            if label not in entry["groups"]:
                entry["groups"].append(label)
            steps = _unique(type_name(type(obj)) for obj in below)
            if len(steps) > len(entry["path"]):  # the longest way down says the most
                counts = self.counts[key]
                entry["path"] = [{"type": n, "count": counts.get(n, (0, 0))[0]} for n in steps]

    def growing_peers(self) -> list[tuple[Any, Any, list[str], int]]:
        """Return (peer, new object, groups, owner's key) for each owner whose own size does
        not grow while another old object holding the same new object does: a bounded
        cache keeping the newest leaked objects beside the unbounded one keeping them all.
        The peer is the one that never lets go."""
        peers = []
        for key, entry in self.found.items():
            sample = self.tree.first.get(key)
            if not isinstance(key, int) or sample is None or self.tables.get(key, 0.0) > 0:
                continue
            for holder in self.growing:  # untracked dicts too, which gc.get_referrers misses
                if id(holder) in (key, *self.found) or self.is_new(holder):
                    continue
                if holds(holder, sample):
                    peers.append((holder, sample, list(entry["groups"]), key))
                    break
        return peers

    def replayed(self, first: dict[str, list[Any]]) -> Owners:
        """Return the owners found again with the chains `first` ahead of all the others:
        what they reach is theirs."""
        again = Owners(self.is_new, self.own, self.tables, self.growing)
        again.add(first)
        for paths in self.added:
            again.add(paths)
        return again

    def holders(self, most: int, floor: int, deadline: float) -> list[tuple[Any, Any]]:
        """Return up to `most` (old object, new object it holds) pairs, scanning the heap
        until `deadline`: old objects that retain at least `floor` bytes of new objects
        no owner found so far retains.

        One leak can have many owners (a message appended to every handler's list): each
        such old object is one more, whose chain the caller then searches.
        """
        found: list[tuple[Any, Any]] = []
        tracked = gc.get_objects()
        for index in range(len(tracked) - 1, -1, -1):
            holder = tracked[index]
            if index % 4096 == 0 and time.monotonic() > deadline:
                break
            if id(holder) in self.claimed or self.is_new(holder):
                continue
            refs = gc.get_referents(holder)
            new = next((r for r in refs if id(r) not in self.claimed and self.is_new(r)), None)
            if new is None:
                continue
            seen: set[int] = set()
            _, retained, _ = _retained(refs, self.is_new, self.claimed, seen)
            if retained >= floor:
                found.append((holder, new))
                if len(found) >= most:
                    break
        tracked.clear()
        return found

    def path_to(self, samples: list[Any]) -> tuple[list[Any], str] | None:
        """Return a chain [Root, ..., owner, ..., sample] to the first of `samples` an owner
        retains, through the new objects under it, and the owner's expression; None when
        no owner retains one."""
        for sample in samples:
            if id(sample) in self.tree.parent:
                path, key = self.tree.path(sample)
                return path, str(self.found[key]["expression"])
        return None

    def of_type(self, name: str) -> Any:
        """Return one new object of the type `name` an owner retains, None when none does."""
        return self.tree.example.get(name)

    def traced_objects(self) -> list[int]:
        """Return [traced, traceable]: of the new objects the owners retain that tracemalloc
        could have traced, how many it did (all, unless the call was traced in slices)."""
        return [self.tree.traced, self.tree.traceable]

    def retained(self) -> int:
        """Return the bytes the owners found so far retain, their own tables' growth too."""
        return sum(int(o["retained_bytes"] + o["table_bytes"]) for o in self.found.values())

    def result(self) -> list[dict[str, Any]]:
        """Return the owners, largest retained first.

        Each: `expression` and `root` (the chain up to it, as code), `type`, `groups` (the
        sites and types whose chain runs through it), `retained_bytes` and
        `retained_objects` (the new objects under it), `path` (the types from the owner
        down to a leaking object, each with how many of them are new under it),
        `largest_types`, `in_place` (the owner is the leaking object itself, old),
        `truncated` (the walk stopped at MAX_RETAINED objects), `table_site` (where the
        call grew the owner's own table), `table_bytes` (how much its own size grew per
        call over the snapshots) and `stored_site` (where the first
        new object it holds directly was allocated), each a traceback or None.
        """
        kept = [
            o
            for o in self.found.values()
            if o["retained_bytes"] or o["table_bytes"] or o["in_place"]
        ]  # an owner whose objects a peer claimed first holds nothing of its own
        return sorted(kept, key=lambda o: -o["retained_bytes"])


def holds(holder: Any, obj: Any) -> bool:
    """True when `holder` refers to `obj`: among its referents, or as a key (a dict with
    string keys does not list its keys as referents)."""
    if any(ref is obj for ref in gc.get_referents(holder)):
        return True
    if isinstance(holder, dict | set | frozenset):
        try:
            return obj in holder
        except TypeError:  # not hashable: not a key
            return False
    return False


def read_snapshots(out: Path) -> dict[int, dict[str, Any]]:
    """Return the snapshots `iter-NNN.json` in `out` by number, unreadable ones left out.

    Each file is read once: the timings, the tables' growth and the growing objects all ask,
    and at millions of objects each file is large. A file written again since (another size
    or time) is read again; one unchanged is not, even when others have come since.
    """
    import json

    snaps: dict[int, dict[str, Any]] = {}
    for path in sorted(out.glob("iter-*.json")):
        try:
            info = path.stat()
        except OSError:
            continue
        stamp = (info.st_size, info.st_mtime_ns)
        cached = _READ.get(str(path))
        if cached is None or cached[0] != stamp:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict):
                continue
            cached = _READ[str(path)] = (stamp, data)
        snaps[int(path.name[len("iter-") : -len(".json")])] = cached[1]
    return snaps


_READ: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}  # path: (size and time, data)


def table_growth(out: Path, first: int) -> dict[int, float]:
    """Return {id: bytes per call} of the large objects (`snapshot.LARGE_BYTES`) whose own
    size grew over the snapshots `iter-NNN.json` in `out` from number `first` on: the
    least-squares slope of each one's size, over the snapshots that list it (at least two).

    A set or dict grows its table by doubling, every few calls: one call's growth says
    nothing, the slope over the snapshots says what a call costs on average.
    """
    import statistics

    series: dict[int, list[tuple[float, float]]] = {}
    for number, snap in sorted(read_snapshots(out).items()):
        if number < first:
            continue
        for ident, size in snap.get("large_objects") or []:
            series.setdefault(int(ident), []).append((float(number), float(size)))
    growth = {}
    last = max((points[-1][0] for points in series.values()), default=0.0)
    for ident, points in series.items():
        if len(points) >= 2 and points[-1][1] > points[0][1] and points[-1][0] == last:
            xs, ys = zip(*points, strict=True)
            slope = statistics.linear_regression(xs, ys).slope
            if slope > 0:
                growth[ident] = slope
    return growth


def growing_objects(tables: dict[int, float], out: Path) -> list[Any]:
    """Return the live objects of `tables` (large objects whose size grows), found by their
    ids in the last snapshot, which the job has not run since: each is checked to still be
    an object of the size listed there before it is used."""
    import ctypes

    snaps = read_snapshots(out)
    if not tables or not snaps:
        return []
    try:
        listed = dict(snaps[max(snaps)].get("large_objects") or [])
    except (TypeError, ValueError):
        return []
    found = []
    for ident in tables:
        if ident not in listed:
            continue
        obj = ctypes.cast(ident, ctypes.py_object).value
        try:
            if sys.getsizeof(obj) == listed[ident]:
                found.append(obj)
        except TypeError:
            continue
    return found


def table_site(owner: Any) -> list[list[Any]] | None:
    """Return where the traced call last allocated `owner`'s own table (a list's items, a
    dict's keys, a set's table, a bytearray's bytes), oldest frame first: the line where
    the owner grew, with its callers. None when the call did not allocate it (the owner
    did not grow there, or not in a traced slice) or for another kind of owner.

    The table's address is read from the object's C layout, checked against its length.
    """
    import ctypes

    layout = next((at for kind, at in _TABLES.items() if isinstance(owner, kind)), None)
    if layout is None:
        return None
    length_at, table_at = layout
    if ctypes.c_ssize_t.from_address(id(owner) + length_at).value != len(owner):
        return None  # not the layout this table expects
    table = ctypes.c_void_p.from_address(id(owner) + table_at).value
    if not table:
        return None
    frames = _traceback_at(table)
    return [[name, line] for name, line in reversed(frames)] if frames else None


# Where the length and the table pointer are in CPython's objects (3.11 to 3.13):
# PyListObject's ob_size and ob_item, PyDictObject's ma_used and ma_keys, PySetObject's
# used and table (a small set's table is inside the object: never traced), and
# PyByteArrayObject's ob_size and ob_bytes.
_TABLES: dict[type, tuple[int, int]] = {list: (16, 24), dict: (16, 32), set: (24, 40)}
_TABLES[bytearray] = (16, 32)


def _traceback_at(address: int) -> Any:
    """Return tracemalloc's frames (most recent first) of the block at `address`, or None."""
    import ctypes

    lookup = ctypes.pythonapi._PyTraceMalloc_GetTraceback
    lookup.argtypes, lookup.restype = [ctypes.c_uint, ctypes.c_size_t], ctypes.py_object
    return lookup(0, address)


def _stored_site(held: list[Any], is_new: Callable[[Any], bool]) -> list[list[Any]] | None:
    """Return where the first new object an owner holds directly was allocated, oldest
    frame first (a bound method made at the `subscribe(...)` call), None when none was
    traced."""
    import tracemalloc

    for obj in held:
        if is_new(obj):
            found = tracemalloc.get_object_traceback(obj)
            if found is not None:
                return [[frame.filename, frame.lineno] for frame in found]
    return None


# `new_since` reads the log of the blocks freed when it holds at most this many frees (a
# block freed again counts again) per old untracked object.
FREED_PER_OLD = 4


def new_since(new_tracked: Path, old_untracked: Path) -> Callable[[Any], bool]:
    """Return a test of whether a live object was made by the traced call.

    Objects the collector tracks: those in `new_tracked`, the ids of the collector's
    objects after the call that were not frozen before it (`gc.freeze`: a frozen object is
    never moved nor collected, so no collection during the call mixes old and new).
    Untracked objects (str, int, float, bytes, and tuples or dicts of only those): those
    tracemalloc traced, and those not among `old_untracked`, the untracked objects the
    snapshot before the call counted. Known limits: an old untracked object freed by the
    call whose address a new one took counts as old unless traced; an old dict or tuple
    the call made tracked counts as new.
    """
    counted = old_untracked.exists()  # not after a single call: then only the traced are new
    try:
        from memdiag.measure.python import _heapwalk
    except ImportError:
        return _new_since(new_tracked, old_untracked, counted)
    old_ids = read_ids(str(old_untracked)) if counted else None
    # The blocks freed since the old objects were listed spare a tracemalloc lookup per old
    # address visited; sorting a log of many times more frees than there are old objects
    # costs more than it can save (a call that frees millions of blocks in a small heap:
    # 0.26 s on the allocation-heavy bench job, for nothing).
    freed = _heapwalk.freed(FREED_PER_OLD * len(old_ids)) if old_ids is not None else None
    _heapwalk.stop_log()  # this copy's own frees are not the call's
    newness: Callable[[Any], bool] = _heapwalk.Newness(
        read_ids(str(new_tracked)), old_ids, traceback_reader(), freed
    )
    return newness


def _new_since(new_tracked: Path, old_untracked: Path, counted: bool) -> Callable[[Any], bool]:
    """`new_since` by the loops here, where the compiled ones were not built."""
    new = set(read_ids(str(new_tracked)))
    old = read_ids(str(old_untracked))
    old_set = set(old) if len(old) <= OLD_AS_SET else None

    def is_new(obj: Any) -> bool:
        if gc.is_tracked(obj):
            return id(obj) in new
        if counted:
            if old_set is not None:
                was_there = id(obj) in old_set
            else:
                at = bisect.bisect_left(old, id(obj))
                was_there = at < len(old) and old[at] == id(obj)
            if not was_there:
                return True
        return is_traced(obj)  # an old address a traced new object took, or no count

    return is_new


# Up to this many old untracked ids are looked up in a set (about 60 MB a million, in the
# forked copy only); beyond, by bisection in the sorted array, 20 to 30 times slower a test:
# at 1.2 million strings, bisection was 4.4 s of the owners' 7.6 s.
OLD_AS_SET = 4_000_000


# CPython keeps freed objects of these types for reuse: tracemalloc did not see them made.
_REUSED = (list, dict, tuple, float)
_MANAGED_DICT = 1 << 4  # Py_TPFLAGS_MANAGED_DICT


def _traceable(kind: type) -> bool:
    """Return whether tracemalloc finds the traceback of a new object of type `kind`: not
    for a type CPython reuses freed objects of, nor, before Python 3.12, for an instance
    with a managed `__dict__` (its address is not its allocation's)."""
    if kind in _REUSED:
        return False
    return sys.version_info >= (3, 12) or not kind.__flags__ & _MANAGED_DICT


def _last_old(objects: list[Any], is_new: Callable[[Any], bool]) -> int | None:
    """Return the index of the last object on the chain that the call did not allocate."""
    for index in range(len(objects) - 1, -1, -1):
        if not is_new(objects[index]):
            return index
    return None


class _Tree:
    """How each new object an owner retains was reached: a chain to it is the owner's chain,
    then the new objects from the owner down to it."""

    def __init__(self) -> None:
        self.parent: dict[int, Any] = {}  # id → the object it was reached from (None: a start)
        self.start: dict[int, Any] = {}  # id of a first object under an owner → the owner's key
        self.prefix: dict[Any, list[Any]] = {}  # owner's key → [Root, ..., owner]
        self.example: dict[str, Any] = {}  # type name → the first new object of the type
        self.first: dict[Any, Any] = {}  # owner's key → the first new object under it
        self.held: dict[Any, list[Any]] = {}  # owner's key → the new objects it holds itself
        # Of the new objects tracemalloc could have traced (`_traceable`): how many, and how
        # many it did. Below 1, the call was traced in slices and this is the share traced.
        self.traceable = 0
        self.traced = 0

    def path(self, obj: Any) -> tuple[list[Any], Any]:
        """Return the chain to `obj`, a new object reached, and its owner's key."""
        down = [obj]
        while id(obj) not in self.start:
            obj = self.parent[id(obj)]
            down.append(obj)
        key = self.start[id(obj)]
        return [*self.prefix[key], *reversed(down)], key


class _Referents:
    """An owner's referents as `_retained`'s starts, read by the compiled loops without a list
    of them where they were built (a set of millions of old strings, in a forked copy: no
    page it is on is written)."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner

    def listed(self) -> list[Any]:
        return gc.get_referents(self.owner)


def _retained(
    starts: list[Any] | _Referents,
    is_new: Callable[[Any], bool],
    claimed: set[int],
    seen: set[int],
    record: tuple[_Tree, Any] | None = None,
) -> tuple[dict[str, tuple[int, int]], int, bool]:
    """Return ({type: (count, bytes)}, bytes, truncated) of the new objects reachable from
    `starts` through new objects only, neither `claimed` nor `seen` (which this extends).

    With `record` (a tree and the owner's key), how each object was reached is kept."""
    counts: dict[str, tuple[int, int]] = {}
    names: dict[type, str] = {}
    total = 0
    select = getattr(is_new, "select", None)  # the compiled test's loops, where built
    if select is not None and isinstance(starts, _Referents):
        compiled: Any = is_new  # `_heapwalk.Newness`
        stack = compiled.select_referents(starts.owner, claimed, seen)
    elif select is not None:
        stack = select(starts, claimed, seen)
    else:
        listed = starts.listed() if isinstance(starts, _Referents) else starts
        stack = [o for o in listed if id(o) not in claimed and id(o) not in seen and is_new(o)]
    ids = list(map(id, stack))
    seen.update(ids)
    tree = record[0] if record is not None else None
    if record is not None and stack:
        record[0].start.update(dict.fromkeys(ids, record[1]))
        record[0].parent.update(dict.fromkeys(ids))
        record[0].first.setdefault(record[1], stack[0])
        record[0].held.setdefault(record[1], list(stack))
    if select is not None:
        return _walked(is_new, stack, claimed, seen, tree)
    walked = 0
    while stack:
        obj = stack.pop()
        walked += 1
        if walked > MAX_RETAINED:
            return counts, total, True
        kind = type(obj)
        name = names.get(kind) or names.setdefault(kind, type_name(kind))
        try:
            size = sys.getsizeof(obj)
        except TypeError:
            size = 0
        count, held = counts.get(name, (0, 0))
        counts[name] = (count + 1, held + size)
        total += size
        if tree is not None:
            tree.example.setdefault(name, obj)
            if _traceable(kind):
                tree.traceable += 1
                tree.traced += is_traced(obj)
        for ref in gc.get_referents(obj):
            if id(ref) not in claimed and id(ref) not in seen and is_new(ref):
                seen.add(id(ref))
                stack.append(ref)
                if tree is not None:
                    tree.parent[id(ref)] = obj
    return counts, total, False


def _walked(
    is_new: Any, stack: list[Any], claimed: set[int], seen: set[int], tree: _Tree | None
) -> tuple[dict[str, tuple[int, int]], int, bool]:
    """`_retained`'s walk from `stack` by the compiled loop (`_heapwalk.Newness.walk`)."""
    pushed, parents, stats, truncated = is_new.walk(stack, claimed, seen, MAX_RETAINED)
    counts: dict[str, tuple[int, int]] = {}
    total = 0
    for kind, (count, size, traced, first) in stats.items():
        name = type_name(kind)
        held = counts.get(name, (0, 0))
        counts[name] = (held[0] + count, held[1] + size)
        total += size
        if tree is not None:
            tree.example.setdefault(name, first)
            if _traceable(kind):
                tree.traceable += count
                tree.traced += traced
    if tree is not None:
        tree.parent.update(zip(map(id, pushed), parents, strict=True))
    return counts, total, truncated


def _unique(names: Any) -> list[str]:
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen
