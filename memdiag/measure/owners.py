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

from memdiag.measure.chaintext import describe
from memdiag.measure.refchain import is_traced
from memdiag.measure.snapshot import type_name
from memdiag.measure.untraced import read_ids

# The most new objects walked under one owner: a bound on the copy's time, reported.
MAX_RETAINED = 2_000_000


class Owners:
    """The owners found so far, and the new objects they retain (each claimed once)."""

    def __init__(self, is_new: Callable[[Any], bool], own: set[int]) -> None:
        self.is_new = is_new
        self.claimed: set[int] = set(own)
        self.found: dict[Any, dict[str, Any]] = {}
        self.counts: dict[Any, dict[str, tuple[int, int]]] = {}
        self.tree = _Tree()

    def add(self, paths: dict[str, list[Any]]) -> None:
        """Add the owners of the chains in `paths` (label → [Root, objects..., sample])."""
        for label, path in paths.items():
            objects = path[1:]
            index = _last_old(objects, self.is_new)
            owner = objects[index] if index is not None else None
            key: Any = id(owner) if owner is not None else path[0].expression
            below = objects[index + 1 :] if index is not None else objects
            if key not in self.found:
                chain = describe(path[: index + 2] if index is not None else path[:1])
                starts = gc.get_referents(owner) if owner is not None else below[:1]
                self.tree.prefix[key] = path[: index + 2] if index is not None else path[:1]
                counts, retained, truncated = _retained(
                    starts, self.is_new, self.claimed, self.claimed, (self.tree, key)
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
                }
            entry = self.found[key]
            if label not in entry["groups"]:
                entry["groups"].append(label)
            steps = _unique(type_name(type(obj)) for obj in below)
            if len(steps) > len(entry["path"]):  # the longest way down says the most
                counts = self.counts[key]
                entry["path"] = [{"type": n, "count": counts.get(n, (0, 0))[0]} for n in steps]

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
        """Return the bytes the owners found so far retain."""
        return sum(int(o["retained_bytes"]) for o in self.found.values())

    def result(self) -> list[dict[str, Any]]:
        """Return the owners, largest retained first.

        Each: `expression` and `root` (the chain up to it, as code), `type`, `groups` (the
        sites and types whose chain runs through it), `retained_bytes` and
        `retained_objects` (the new objects under it), `path` (the types from the owner
        down to a leaking object, each with how many of them are new under it),
        `largest_types`, `in_place` (the owner is the leaking object itself, old),
        `truncated` (the walk stopped at MAX_RETAINED objects).
        """
        return sorted(self.found.values(), key=lambda o: -o["retained_bytes"])


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
    new = set(read_ids(str(new_tracked)))
    old = read_ids(str(old_untracked))
    counted = old_untracked.exists()  # not after a single call: then only the traced are new
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


# Up to this many old untracked ids are looked up in a set (about 60 MB); beyond, by
# bisection in the sorted array.
OLD_AS_SET = 1_000_000


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


def _retained(
    starts: list[Any],
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
    stack = [o for o in starts if id(o) not in claimed and id(o) not in seen and is_new(o)]
    seen.update(id(obj) for obj in stack)
    tree = record[0] if record is not None else None
    if record is not None:
        for obj in stack:
            record[0].start[id(obj)] = record[1]
            record[0].parent[id(obj)] = None
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


def _unique(names: Any) -> list[str]:
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen
