"""Groups one call's growth by the object that retains it, in the live child.

Runs in the forked copy of `memdiag leaks`'s child after the last call, which ran under
tracemalloc (`newer_than` says which objects that call created). On each reference chain found
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

import gc
import sys
import time
from collections.abc import Callable
from typing import Any

from memdiag.measure.chaintext import describe
from memdiag.measure.snapshot import type_name

# The most new objects walked under one owner: a bound on the copy's time, reported.
MAX_RETAINED = 2_000_000


class Owners:
    """The owners found so far, and the new objects they retain (each claimed once)."""

    def __init__(self, is_new: Callable[[Any], bool], own: set[int]) -> None:
        self.is_new = is_new
        self.claimed: set[int] = set(own)
        self.found: dict[Any, dict[str, Any]] = {}
        self.counts: dict[Any, dict[str, tuple[int, int]]] = {}

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
                counts, retained, truncated = _retained(
                    starts, self.is_new, self.claimed, self.claimed
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


def newer_than(mark: object) -> Callable[[Any], bool]:
    """Return a test of whether an object was created after `mark` and is still live.

    Containers the collector tracks: those after `mark` in its list, which a full
    collection keeps in order, appending younger objects behind older ones (`mark` was put
    in the oldest generation before the call). A collection also moves an object reachable
    only from later objects behind them, so an old object held only by new ones is after
    the mark too: where tracemalloc can tell, it must also have traced the object. It
    cannot for lists, dicts, tuples and floats (CPython reuses freed ones) nor, before
    Python 3.12, for instances with a managed `__dict__`. Untracked objects (str, int,
    bytes, and tuples or dicts of only those): those tracemalloc traced, or holding one.
    """
    from memdiag.measure.refchain import is_traced

    tracked = gc.get_objects()
    newer: set[int] = set()
    for index in range(len(tracked) - 1, -1, -1):
        if tracked[index] is mark:
            break
        newer.add(id(tracked[index]))
    else:
        newer.clear()  # no mark: nothing is known to be new
    del tracked

    def is_new(obj: Any) -> bool:
        if gc.is_tracked(obj):
            return id(obj) in newer and (not _traceable(type(obj)) or is_traced(obj))
        if is_traced(obj):
            return True
        if type(obj) in (tuple, dict):
            return any(not gc.is_tracked(r) and is_traced(r) for r in gc.get_referents(obj))
        return False

    return is_new


# CPython keeps freed objects of these types for reuse: tracemalloc did not see them made.
_REUSED = (list, dict, tuple, float)
_MANAGED_DICT = 1 << 4  # Py_TPFLAGS_MANAGED_DICT


def _traceable(kind: type) -> bool:
    """Return whether tracemalloc finds the traceback of a new object of type `kind`."""
    if kind in _REUSED:
        return False
    return sys.version_info >= (3, 12) or not kind.__flags__ & _MANAGED_DICT


def _last_old(objects: list[Any], is_new: Callable[[Any], bool]) -> int | None:
    """Return the index of the last object on the chain that the call did not allocate."""
    for index in range(len(objects) - 1, -1, -1):
        if not is_new(objects[index]):
            return index
    return None


def _retained(
    starts: list[Any], is_new: Callable[[Any], bool], claimed: set[int], seen: set[int]
) -> tuple[dict[str, tuple[int, int]], int, bool]:
    """Return ({type: (count, bytes)}, bytes, truncated) of the new objects reachable from
    `starts` through new objects only, neither `claimed` nor `seen` (which this extends)."""
    counts: dict[str, tuple[int, int]] = {}
    names: dict[type, str] = {}
    total = 0
    stack = [o for o in starts if id(o) not in claimed and id(o) not in seen and is_new(o)]
    seen.update(id(obj) for obj in stack)
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
        for ref in gc.get_referents(obj):
            if id(ref) not in claimed and id(ref) not in seen and is_new(ref):
                seen.add(id(ref))
                stack.append(ref)
    return counts, total, False


def _unique(names: Any) -> list[str]:
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen
