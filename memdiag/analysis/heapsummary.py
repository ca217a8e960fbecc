"""A V8 heap snapshot summarised: objects by constructor, the largest retainers, their paths.

Constructors are grouped as Chrome DevTools' Summary view groups them: objects and native
objects by constructor name, the rest by V8's node type (`(string)`, `(array)`, `(closure)`,
...). A constructor's retained size counts each object once: only the objects not dominated by
another object of the same constructor add their retained size.

A path is the shortest chain of strong references from V8's root (or from the global objects,
when the root's names nothing: see `path_expression`), written as JavaScript from its last
named variable or global property on (`service.processedRecords`,
`EVENT_BUS._events.progress[17]`); V8's internal links (a Set's hash table, a context) are
left out of the expression, and a closure on the path is named with its script line.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from memdiag.analysis.dominators import DominatorTree, Parents
    from memdiag.measure.node.heapsnapshot import HeapGraph

NAMED_TYPES = ("object", "native")
# Nodes that stand for V8's own bookkeeping, never reported as retainers.
SYSTEM_TYPES = ("hidden", "synthetic", "code", "object shape")
# Left out of the constructors: V8's root and its groups of roots retain everything.
IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


@dataclass(frozen=True)
class HeapSummary:
    """What `summarise` returns: total self size in bytes, node count, constructors (dicts of
    name, count, self_bytes, retained_bytes) and retainers (dicts, see `retainer`)."""

    heap_bytes: int
    node_count: int
    constructors: list[dict[str, Any]]
    retainers: list[dict[str, Any]]


def constructor_keys(graph: HeapGraph) -> tuple[np.ndarray, list[str]]:
    """Return per node the index of its constructor group, and the groups' names."""
    import numpy as np

    named = np.isin(graph.node_type, [graph.type_code(t) for t in NAMED_TYPES])
    # Named nodes keep their string index; the others get one key per node type past them.
    # Keys are numbered in order through a table of the keys present, not by sorting them.
    base = len(graph.strings)
    wide = np.int64 if base + len(graph.node_types) >= 2**31 else np.int32
    raw: np.ndarray = graph.node_type.astype(wide)
    np.add(raw, base, out=raw)
    np.copyto(raw, graph.node_name, where=named, casting="unsafe")
    del named
    present = np.zeros(base + len(graph.node_types), dtype=bool)
    present[raw] = True
    keys = np.flatnonzero(present)
    number: np.ndarray = np.cumsum(present, dtype=wide)
    np.subtract(number, 1, out=number)
    del present
    inverse = number[raw]
    del raw, number
    names = [
        _constructor_name(graph.strings[k]) if k < base else f"({graph.node_types[k - base]})"
        for k in keys.tolist()
    ]
    return inverse, names


def _constructor_name(name: str) -> str:
    # V8 names some native objects "Node / Name" and system ones "system / Name".
    return name.split(" / ")[-1] if " / " in name and name.startswith("system") else name


def summarise(
    graph: HeapGraph, tree: DominatorTree, top_constructors: int = 50, top_retainers: int = 20
) -> HeapSummary:
    """Return the heap's constructors by retained size and its largest retainers."""
    import numpy as np

    group, names = constructor_keys(graph)
    graph.release_pages()  # every node's name was read
    synthetic, size = graph.type_code("synthetic"), graph.self_size
    count = np.zeros(len(names), dtype=np.int64)
    selfs, kept = np.zeros(len(names)), np.zeros(len(names))
    heap_bytes = int(size[0])
    # A slice of nodes at a time: the weights of `bincount` are float64 copies.
    for lo in range(0, graph.node_count, SLICE):
        hi = min(lo + SLICE, graph.node_count)
        idom, own = tree.idom[lo:hi], group[lo:hi]
        live = idom >= 0
        heap_bytes += int(size[lo:hi][live].sum())
        reached = live & (graph.node_type[lo:hi] != synthetic)
        # a constructor's retained size counts the objects no other of its kind dominates
        outer = reached & ~(live & (group[np.maximum(idom, 0)] == own))
        count += np.bincount(own[reached], minlength=len(names))
        selfs += np.bincount(own[reached], weights=size[lo:hi][reached], minlength=len(names))
        kept += np.bincount(own[outer], weights=tree.retained[lo:hi][outer], minlength=len(names))
    del group  # before the retainers' own work
    graph.release_pages()  # the types and sizes were read whole
    ranked = np.lexsort((-selfs, -kept))
    system = {graph.type_code(t) for t in SYSTEM_TYPES}
    constructors = [
        {
            "name": names[i],
            "count": int(count[i]),
            "self_bytes": int(selfs[i]),
            "retained_bytes": int(kept[i]),
        }
        for i in ranked[:top_constructors].tolist()
        if count[i]
    ]
    return HeapSummary(
        heap_bytes=heap_bytes,
        node_count=graph.node_count,
        constructors=constructors,
        retainers=largest_retainers(graph, tree, system, top_retainers),
    )


def largest_retainers(
    graph: HeapGraph, tree: DominatorTree, system: set[int], top: int
) -> list[dict[str, Any]]:
    """Return the `top` objects retaining most, each once: one that only passes its whole
    retained size on to a single child (a wrapper) gives way to the child, and a collection's
    own table is named as the collection (see `collection_of`)."""
    import numpy as np

    # The root's own children (the groups of GC roots, the global object) retain everything.
    system_codes = list(system)
    idx = _largest(
        tree.retained,
        lambda lo, hi: (
            ~np.isin(graph.node_type[lo:hi], system_codes)
            & (tree.idom[lo:hi] >= 0)
            & (tree.parent[lo:hi] > 0)
        ),
        top * 4,
    )
    graph.release_pages()  # the types and the breadth-first edges were read whole
    chosen: dict[int, int] = {}  # node -> its retained bytes, as reported
    for table in idx.tolist():
        node, retained = collection_of(graph, tree, table)
        if node in chosen:
            chosen[node] = max(chosen[node], retained)
            continue
        holder = int(tree.idom[node])
        if holder in chosen and retained * 10 >= chosen[holder] * 9:
            del chosen[holder]  # the holder only wraps this one
        chosen[node] = retained
        if len(chosen) >= top:
            break
    ranked = sorted(chosen.items(), key=lambda item: -item[1])
    return [retainer(graph, tree, node, retained) for node, retained in ranked]


# Nodes looked at a slice at a time where a whole-heap mask or index would be tens of MB.
SLICE = 1 << 19


def _largest(values: np.ndarray, mask: Callable[[int, int], np.ndarray], k: int) -> np.ndarray:
    """Return the indices of the `k` largest `values` where `mask(lo, hi)` (the mask of the
    slice lo:hi) is set, largest first, ties in index order; a slice at a time."""
    import numpy as np

    kept = []
    for lo in range(0, len(values), SLICE):
        hi = min(lo + SLICE, len(values))
        where = np.flatnonzero(mask(lo, hi))
        part = values[lo:hi][where]
        if len(part) > k:  # every value tied with the k-th largest stays: ties go by index
            where = where[part >= np.partition(part, len(part) - k)[len(part) - k]]
        kept.append(where + lo)
    idx = np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)
    ranked: np.ndarray = idx[np.argsort(-values[idx], kind="stable")[:k]]
    return ranked


def collection_of(graph: HeapGraph, tree: DominatorTree, node: int) -> tuple[int, int]:
    """Return the object `node` stands for and the bytes it retains with it: a Set's, a Map's
    or an Array's own table (an internal array held by an internal link) is the collection.

    The table can be held also from elsewhere (a stack slot of the code adding to the Set
    when the snapshot was taken): it is then not dominated by the collection, whose own
    retained size leaves it out, and both count.
    """
    if graph.node_types[int(graph.node_type[node])] in NAMED_TYPES:
        return node, int(tree.retained[node])
    holder = _holding_collection(graph, tree.parent, tree.parent_edge, node)
    if holder < 0 and not _written_path(graph, tree.parent, tree.parent_edge, node)[0]:
        holder = _holding_collection(graph, *_user_paths(graph), node)
    if holder < 0:  # both shortest paths pass elsewhere: any collection holding it counts
        holder = _retaining_collection(graph, node)
    if holder < 0:
        return node, int(tree.retained[node])
    kept = int(tree.retained[holder])
    return holder, kept if int(tree.idom[node]) == holder else kept + int(tree.retained[node])


def _holding_collection(
    graph: HeapGraph, parent: Parents, parent_edge: np.ndarray, node: int
) -> int:
    """Return the object holding `node` by an internal link on the given paths, or -1."""
    holder = int(parent[node])
    if holder <= 0:
        return -1
    internal, named = _collection_links(graph)
    edge = int(parent_edge[node])
    if int(graph.edge_type[edge]) in internal and int(graph.node_type[holder]) in named:
        return holder
    return -1


def _collection_links(graph: HeapGraph) -> tuple[list[int], list[int]]:
    """Return the edge types by which a collection holds its table (internal, hidden) and
    the node types a collection has (objects, natives)."""
    internal = [graph.edge_code("internal"), graph.edge_code("hidden")]
    return internal, [graph.type_code(t) for t in NAMED_TYPES]


def _retaining_collection(graph: HeapGraph, node: int) -> int:
    """Return an object holding `node` by an internal link among all its retainers, or -1:
    a Set's table reached first through a stack slot of the code adding to the Set (the
    snapshot taken in its loop) is still the Set's. One pass over the edges, for the few
    largest retainers only."""
    import numpy as np

    internal, named = _collection_links(graph)
    for lo in range(0, len(graph.edge_to), SLICE):
        edges = np.flatnonzero(graph.edge_to[lo : lo + SLICE] == node) + lo
        edges = edges[np.isin(graph.edge_type[edges], internal)]
        if not len(edges):
            continue
        owners = graph.edge_owners(edges)
        held = owners[np.isin(graph.node_type[owners], named) & (owners > 0)]
        if len(held):
            return int(held[0])
    return -1


def retainer(
    graph: HeapGraph, tree: DominatorTree, node: int, retained: int | None = None
) -> dict[str, Any]:
    """Return one object as JSON: V8 node id, constructor, self and retained bytes (`retained`
    when given), path."""
    expression, closures = path_expression(graph, tree, node)
    return {
        "id": int(graph.node_id[node]),
        "name": node_label(graph, node),
        "type": graph.node_types[int(graph.node_type[node])],
        "self_bytes": int(graph.self_size[node]),
        "retained_bytes": int(tree.retained[node] if retained is None else retained),
        "expression": expression,
        "closures": closures,
    }


def node_label(graph: HeapGraph, node: int) -> str:
    """Return a node's constructor (objects), or its type in brackets."""
    kind = graph.node_types[int(graph.node_type[node])]
    if kind in NAMED_TYPES:
        return _constructor_name(graph.strings[int(graph.node_name[node])])
    return f"({kind})"


def path_expression(graph: HeapGraph, tree: DominatorTree, node: int) -> tuple[str, list[str]]:
    """Return the path from the root to `node` as JavaScript, and its closures' locations
    (`name job.js:11`), outermost first.

    The shortest path is tried first; when it names nothing (it runs through a stack slot or
    a handle of the code running when the snapshot was taken), the shortest path from the
    global objects is written instead, as DevTools shows it.
    """
    text, closures = _written_path(graph, tree.parent, tree.parent_edge, node)
    if not text:
        text, closures = _written_path(graph, *_user_paths(graph), node)
    return text or node_label(graph, node), closures


# The last graph's user-root paths (by identity, not kept alive): one BFS per snapshot.
_USER_PATHS: list[tuple[weakref.ref[HeapGraph], tuple[Parents, np.ndarray]]] = []


def _user_paths(graph: HeapGraph) -> tuple[Parents, np.ndarray]:
    """Return `dominators.user_root_paths(graph)`, computed once per graph."""
    from memdiag.analysis.dominators import user_root_paths

    if not _USER_PATHS or _USER_PATHS[0][0]() is not graph:
        _USER_PATHS[:] = [(weakref.ref(graph), user_root_paths(graph))]
    return _USER_PATHS[0][1]


def _written_path(
    graph: HeapGraph, parent: Parents, parent_edge: np.ndarray, node: int
) -> tuple[str, list[str]]:
    edges: list[int] = []
    cur = node
    while parent[cur] >= 0 and len(edges) < 200:
        edges.append(int(parent_edge[cur]))
        cur = int(parent[cur])
    edges.reverse()
    text, closures = "", []
    kinds = graph.edge_types
    for edge in edges:
        kind = kinds[int(graph.edge_type[edge])]
        name = int(graph.edge_name[edge])
        target = int(graph.edge_to[edge])
        if kind == "context":  # a variable in a scope: a fresh start, by its own name
            text = graph.strings[name]
        elif kind == "property":
            key = graph.strings[name]
            if _is_global(graph, edge):
                text = key
            elif text:
                text += f".{key}" if IDENTIFIER.match(key) else f"[{key!r}]"
        elif kind == "element" and text:
            text += f"[{name}]"
        if graph.node_types[int(graph.node_type[target])] == "closure":
            closures.append(closure_location(graph, target))
    return text, closures


def _is_global(graph: HeapGraph, edge: int) -> bool:
    """True when `edge` leaves a global object (a property of `globalThis`)."""
    owner = int(graph.edge_owners(edge))
    label = graph.strings[int(graph.node_name[owner])]
    return label.startswith("global") or label.startswith("Window")


def closure_location(graph: HeapGraph, node: int) -> str:
    """Return a closure's name and script line (`onProgress job.js:11`, 1-based)."""
    name = graph.strings[int(graph.node_name[node])] or "(anonymous)"
    where = graph.locations.get(node)
    script = _script_name(graph, node)
    if where is None:
        return name
    base = script.rsplit("/", 1)[-1] if script else f"script {where[0]}"
    return f"{name} {base}:{where[1] + 1}"


def _script_name(graph: HeapGraph, node: int) -> str:
    """Return the closure's script path: closure -> shared -> script -> name."""
    shared = _edge_target(graph, node, "shared")
    script = _edge_target(graph, shared, "script") if shared >= 0 else -1
    if script < 0:
        script = _edge_target(graph, shared, "script_or_debug_info") if shared >= 0 else -1
    source = _edge_target(graph, script, "name") if script >= 0 else -1
    return graph.strings[int(graph.node_name[source])] if source >= 0 else ""


def _edge_target(graph: HeapGraph, node: int, name: str) -> int:
    """Return the node that `node`'s edge called `name` points to, or -1."""
    named = {graph.edge_code(k) for k in ("property", "internal", "context", "shortcut")}
    for edge in range(int(graph.first_edge[node]), int(graph.first_edge[node + 1])):
        kind = int(graph.edge_type[edge])
        if kind in named and graph.strings[int(graph.edge_name[edge])] == name:
            return int(graph.edge_to[edge])
    return -1
