"""Names what leaks, in the live child: the type allocated at a site, and who keeps it alive.

Standard library only. The type comes from `tracemalloc.get_object_traceback` over the live
objects: those whose allocating line is the leaking site. The chain is the shortest path of
references from a module's globals to one of those objects, found by a breadth-first walk
forward from every module (one pass over what is reachable, where walking backwards with
`gc.get_referrers` would scan the whole heap at every step). Class attributes, closures and
registries are all reached from some module, and each hop is named as Python would spell it.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
import types
from collections import deque
from typing import Any

from memdiag.measure.snapshot import live_objects, type_name

SAMPLES = 20
# A walk of the whole reachable heap is bounded: beyond this many objects, give up on a chain.
MAX_WALK = 3_000_000
Site = tuple[str, int]


class Evidence:
    """Live objects grouped by allocating line: types per site, sample objects per type."""

    def __init__(self, sites: set[Site], type_names: set[str], grown: set[str]) -> None:
        """Group the live objects of the `grown` types (tracing must still be on)."""
        self.site_types: dict[Site, dict[str, int]] = {s: {} for s in sites}
        self.site_samples: dict[Site, list[Any]] = {s: [] for s in sites}
        self.type_sites: dict[str, dict[Site, list[Any]]] = {t: {} for t in type_names}
        names: dict[type, str] = {}
        for obj in live_objects():
            kind = type(obj)
            name = names.get(kind) or names.setdefault(kind, type_name(kind))
            # Only types whose count grew can hold what leaks: the rest need no traceback.
            raw = _raw_traceback(obj) if name in grown else None
            if not raw:
                continue
            site = raw[0]  # the raw form is most recent first: the allocating line
            if site in self.site_types:
                sizes = self.site_types[site]
                sizes[name] = sizes.get(name, 0) + sys.getsizeof(obj)
                if len(self.site_samples[site]) < SAMPLES:
                    self.site_samples[site].append(obj)
            if name in self.type_sites:
                held = self.type_sites[name].setdefault(site, [])
                if len(held) < SAMPLES:
                    held.append(obj)

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
        if not by_site:
            return None, []
        site = max(by_site, key=lambda s: len(by_site[s]))
        return site, by_site[site]


def _raw_traceback(obj: Any) -> tuple[Site, ...] | None:
    # The raw tuple, without the Traceback and Frame wrappers: this runs for every live
    # object of the grown types, a few hundred thousand times.
    if _get_raw is not None:
        frames: tuple[Site, ...] | None = _get_raw(obj)
        return frames
    tb = tracemalloc.get_object_traceback(obj)
    return tuple((f.filename, f.lineno) for f in reversed(tb)) if tb is not None else None


_get_raw = getattr(tracemalloc, "_get_object_traceback", None)


def find_paths(groups: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Return, per group, [module, its __dict__, ..., target]: the shortest path from a
    module to any of the group's objects. One walk serves every group; a group whose
    objects are not reachable from any module has no entry.
    """
    wanted: dict[int, list[str]] = {}
    for group, targets in groups.items():
        for target in targets:
            wanted.setdefault(id(target), []).append(group)
    paths: dict[str, list[Any]] = {}
    parent: dict[int, int | None] = {}
    seen: dict[int, Any] = {}
    queue: deque[Any] = deque()
    for name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if namespace is None:
            continue
        if name == "__main__" or name.startswith("memdiag.measure"):
            # memdiag's own child modules hold the samples being looked for: never walked.
            seen[id(namespace)], parent[id(namespace)] = namespace, None
            continue
        seen[id(module)], parent[id(module)] = module, None
        if id(namespace) not in seen:
            seen[id(namespace)], parent[id(namespace)] = namespace, id(module)
            queue.append(namespace)
    while queue and len(seen) < MAX_WALK and len(paths) < len(groups):
        obj = queue.popleft()
        for ref in gc.get_referents(obj):
            rid = id(ref)
            if rid in seen or isinstance(ref, types.FrameType | types.ModuleType):
                continue
            seen[rid], parent[rid] = ref, id(obj)
            for group in wanted.get(rid, ()):
                paths.setdefault(group, _unwind(rid, parent, seen))
            queue.append(ref)
    return paths


def _unwind(rid: int, parent: dict[int, int | None], seen: dict[int, Any]) -> list[Any]:
    path = []
    node: int | None = rid
    while node is not None:
        path.append(seen[node])
        node = parent[node]
    return path[::-1]


def _hop(parent: Any, child: Any, owner: Any = None) -> str | None:
    """Return how `parent` refers to `child` (`.name`, `[3]`, `['key']`), None to fold it.

    `owner` is the object before `parent` on the path: when `parent` is its namespace (a
    module's, a class's or an instance's `__dict__`), keys are attribute names.
    """
    if isinstance(parent, dict):
        namespace = isinstance(owner, types.ModuleType | type) or _namespace_of(owner, parent)
        for key, value in parent.items():
            if value is child:
                return f".{key}" if namespace and isinstance(key, str) else f"[{key!r}]"
        return "<a key>"
    if isinstance(parent, list | tuple):
        for index, value in enumerate(parent):
            if value is child:
                return None if isinstance(parent, tuple) and _is_closure(parent) else f"[{index}]"
    if isinstance(parent, set | frozenset):
        return "{...}"
    if isinstance(parent, types.CellType):
        return None
    if isinstance(parent, types.FunctionType):
        return None if child is parent.__closure__ else f"<{_attribute(parent, child)}>"
    if isinstance(parent, type) and any(r is child for r in gc.get_referents(parent.__dict__)):
        return None  # a class's namespace (behind its mappingproxy): the next hop names it
    if child is getattr(parent, "__dict__", None):
        return None  # an instance's or a class's namespace: the next hop names the attribute
    return f".{_attribute(parent, child)}"


def _namespace_of(owner: Any, mapping: dict[Any, Any]) -> bool:
    try:
        return owner is not None and getattr(owner, "__dict__", None) is mapping
    except Exception:  # a foreign object's __dict__ may raise anything
        return False


def _is_closure(value: tuple[Any, ...]) -> bool:
    return bool(value) and all(isinstance(v, types.CellType) for v in value)


def _attribute(parent: Any, child: Any) -> str:
    # Python 3.11+ instances keep their attributes inline: the referent is the value itself.
    for name, value in getattr(parent, "__dict__", {}).items():
        if value is child:
            return str(name)
    for name in dir(type(parent)):
        try:
            if getattr(parent, name) is child:
                return name
        except Exception:  # a property may raise anything; it is simply not the one
            continue
    return "?"


def _closure_names(path: list[Any]) -> dict[int, str]:
    """Return, for the cells on `path`, the free-variable name each one holds."""
    names: dict[int, str] = {}
    for function in path:
        if isinstance(function, types.FunctionType) and function.__closure__:
            free = function.__code__.co_freevars
            names.update((id(c), n) for n, c in zip(free, function.__closure__, strict=False))
    return names


def describe(path: list[Any]) -> dict[str, Any]:
    """Return the chain as JSON: the root's kind and name, an expression, and each hop."""
    module = path[0]
    expression = getattr(module, "__name__", "?")
    cells = _closure_names(path)
    hops = [{"via": expression, "type": "module"}]
    kind = "class attribute" if len(path) > 3 and isinstance(path[2], type) else "module global"
    for owner, parent, child in zip(path, path[1:], path[2:], strict=False):
        via = _hop(parent, child, owner)
        if isinstance(child, types.CellType):
            via, kind = f"<closure {cells.get(id(child), '?')}>", "closure"
        if via is None:
            continue
        expression += via
        hops.append({"via": via, "type": type_name(type(child)), "items": _items(child)})
    if kind == "module global" and len(hops) > 2 and hops[1]["type"] in _REGISTRY_TYPES:
        kind = "registry"
    return {"root": kind, "expression": expression, "hops": hops}


_REGISTRY_TYPES = {"list", "dict", "set", "collections.deque", "collections.OrderedDict"}


def _items(obj: Any) -> int | None:
    try:
        return len(obj)
    except Exception:  # len() of a foreign object may raise anything
        return None
