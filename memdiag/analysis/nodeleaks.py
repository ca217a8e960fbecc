"""What grows in a Node.js heap across a series of V8 snapshots, and who owns the growth.

The snapshots come from one inspector session: V8 numbers each object once per session (node
ids survive between two snapshots of the same session, not a close and reopen), so an object
is followed from snapshot to snapshot by its id. Per snapshot only `ObjectSizes` is kept: the
ids of every live object and the retained size of those retaining at least `SIZE_FLOOR`.

An object grows when its retained size, over the snapshots after the warm-up, grows by the
leak rule (`memdiag.analysis.leaks.grows`, per interval). It must be present in the first of
them: what grows is older than the growth. The owners of the growth are chosen in the last
snapshot's dominator tree, deepest first: a growing object is an owner unless growing owners
below it already cover `COVER` (90%) of its growth; an owner then replaces the owners below it.
An owner reached by an internal link (a Set's or an Array's backing store) is named by the
collection that holds it. Each owner comes with its path as JavaScript, the closures on it,
and one of the objects added under it (`EVENT_BUS._handlers.progress[17]`, a closure with its
script line).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memdiag.analysis.heapsummary import (
    closure_location,
    collection_of,
    node_label,
    path_expression,
)
from memdiag.analysis.leaks import LeakSettings, Trend, grows, trend
from memdiag.model import LeakReport, NativeGrowth, Snapshot

if TYPE_CHECKING:
    import numpy as np

    from memdiag.analysis.dominators import DominatorTree
    from memdiag.measure.node.heapsnapshot import HeapGraph

# Objects retaining less than this are kept by id only (their retained size counts as 0).
SIZE_FLOOR = 1024
# A growing object gives way to the growing objects below it that cover this share of its growth.
COVER = 0.9
# What `_into_collection` looks into, and how deep.
COLLECTIONS = ("Array", "Set", "Map", "Object")
INTO_STEPS = 4
# V8's own groupings and bookkeeping: never an owner.
NOT_OWNERS = ("synthetic", "hidden", "code", "object shape")


@dataclass
class ObjectSizes:
    """One snapshot's objects: `ids` (sorted V8 node ids of every live object) and, sorted
    by id, the objects retaining at least `SIZE_FLOOR` bytes with their retained sizes."""

    ids: np.ndarray
    big_ids: np.ndarray
    big_retained: np.ndarray


def object_sizes(graph: HeapGraph, tree: DominatorTree, floor: int = SIZE_FLOOR) -> ObjectSizes:
    """Return the ids and retained sizes of `graph`'s live objects (reached from the root)."""
    import numpy as np

    live = tree.idom >= 0
    live[0] = True
    ids = graph.node_id[live]
    order = np.argsort(ids, kind="stable")
    big = live & (tree.retained >= floor)
    big_ids = graph.node_id[big]
    by_id = np.argsort(big_ids, kind="stable")
    return ObjectSizes(ids[order], big_ids[by_id], tree.retained[big][by_id])


def growing_objects(series: Sequence[ObjectSizes], settings: LeakSettings) -> dict[int, Trend]:
    """Return {V8 node id: its retained size's Trend} of the objects present in the first of
    `series` whose retained size grows by the leak rule over `series`."""
    import numpy as np

    if len(series) < 2:
        return {}
    last = series[-1]
    wanted = last.big_ids[last.big_retained >= settings.min_growth_bytes]
    wanted = wanted[np.isin(wanted, series[0].ids)]
    columns = []
    for sizes in series:
        at = np.searchsorted(sizes.big_ids, wanted)
        at = np.minimum(at, max(len(sizes.big_ids) - 1, 0))
        hit = (sizes.big_ids[at] == wanted) if len(sizes.big_ids) else np.zeros(len(wanted), bool)
        values = sizes.big_retained[at] if len(sizes.big_ids) else np.zeros(len(wanted))
        columns.append(np.where(hit, values, 0))
    table = np.stack(columns, axis=1) if columns else np.empty((0, 0))
    found = {}
    for ident, row in zip(wanted.tolist(), table.tolist(), strict=True):
        t = trend(row)
        if grows(t, settings):
            found[int(ident)] = t
    return found


def growth_owners(
    graph: HeapGraph,
    tree: DominatorTree,
    growing: dict[int, Trend],
    first_ids: np.ndarray,
    leaking_types: Sequence[str] = (),
    top: int = 5,
) -> list[dict[str, Any]]:
    """Return the owners of the growth in the last snapshot (`graph`, `tree`), largest first,
    as the entries `memdiag.analysis.leaks.owners` reads, plus `node_id`, `sample` (the path
    of one object added under the owner) and `closures` (on both paths, with script lines).
    `first_ids` are the ids of the first snapshot after the warm-up: what is not among them
    is new."""
    import numpy as np

    if not growing:
        return []
    order = np.argsort(graph.node_id, kind="stable")
    wanted = np.fromiter(growing, dtype=np.int64)
    at = order[np.searchsorted(graph.node_id[order], wanted)]
    skip = {graph.type_code(t) for t in NOT_OWNERS}
    slope = {}
    for ident, node in zip(wanted.tolist(), at.tolist(), strict=True):
        if int(graph.node_id[node]) == ident and int(graph.node_type[node]) not in skip:
            slope[int(node)] = growing[ident].per_step
    chosen = _deepest(tree, slope)
    chosen = list(dict.fromkeys(_collection(graph, tree, node, slope) for node in chosen))
    chosen.sort(key=lambda node: -slope[node])
    chosen = chosen[:top]
    new = ~np.isin(graph.node_id, first_ids)
    under = _owner_of(tree, chosen)
    entries = []
    for index, owner in enumerate(chosen):
        # a Set's table is named as the Set; a holder as the collection inside it
        node = collection_of(graph, tree, _into_collection(graph, tree, owner))[0]
        expression, closures = path_expression(graph, tree, node)
        added = np.flatnonzero((under == index) & new)
        added = added[(added != owner) & (added != node)]
        sample, more = _sample(graph, tree, added)
        kinds = _types_of(graph, added)
        steps = max(next(iter(growing.values())).steps, 1)
        entries.append(
            {
                "expression": expression,
                "root": _root_kind(graph, tree, node),
                "type": node_label(graph, node),
                "retained_bytes": slope[owner],
                "retained_objects": round(len(added) / steps),
                "groups": [name for name, _, _ in kinds if name in leaking_types],
                "path": [
                    {"type": name, "count": round(count / steps)}
                    for name, count, _ in sorted(kinds, key=lambda k: -k[1])[:1]
                ],
                "largest_types": [
                    {"type": name, "count": count, "size_bytes": size}
                    for name, count, size in kinds[:3]
                ],
                "in_place": False,
                "truncated": False,
                "node_id": int(graph.node_id[node]),
                "sample": sample,
                "closures": list(dict.fromkeys([*closures, *more])),
            }
        )
    return entries


def _ancestors(tree: DominatorTree, node: int) -> list[int]:
    chain: list[int] = []
    cur = int(tree.idom[node])
    while cur >= 0 and len(chain) < 10_000:
        chain.append(cur)
        cur = int(tree.idom[cur])
    return chain


def _deepest(tree: DominatorTree, slope: dict[int, float]) -> list[int]:
    """Return the owners among the growing nodes: deepest first, each replacing the owners
    below it unless they cover COVER of its growth."""
    chosen: dict[int, set[int]] = {}  # owner -> its growing ancestors
    for node in sorted(slope, key=lambda v: -int(tree.depth[v])):
        below = [d for d, ups in chosen.items() if node in ups]
        if below and sum(slope[d] for d in below) >= COVER * slope[node]:
            continue
        for d in below:
            del chosen[d]
        chosen[node] = {a for a in _ancestors(tree, node) if a in slope}
    return list(chosen)


def _collection(graph: HeapGraph, tree: DominatorTree, node: int, slope: dict[int, float]) -> int:
    """Return the collection that holds `node` through internal links (a Set's table, an
    Array's elements), when it grows as much; else `node`."""
    internal = {graph.edge_code("internal"), graph.edge_code("hidden")}
    while True:
        holder = int(tree.idom[node])
        edge = int(tree.parent_edge[node])
        if (
            holder in slope
            and int(tree.parent[node]) == holder
            and int(graph.edge_type[edge]) in internal
            and slope[node] >= COVER * slope[holder]
        ):
            node = holder
            continue
        return node


def _into_collection(graph: HeapGraph, tree: DominatorTree, node: int) -> int:
    """Return the collection (an Array, Set, Map or object) held by `node` by a property, an
    element or a variable that keeps COVER of what `node` keeps, followed down INTO_STEPS
    links; else `node`.

    A growing collection can be missed by the snapshots' ids (its table is a new object at
    every resize, and a table held for a moment from a stack slot is not under it), while its
    holder's size grows: the holder is then found, and the collection is what its user added
    to."""
    import numpy as np

    named = [graph.edge_code(kind) for kind in ("property", "element", "context")]
    for _ in range(INTO_STEPS):
        keeps = collection_of(graph, tree, node)[1]
        edges = np.arange(int(graph.first_edge[node]), int(graph.first_edge[node + 1]))
        children = graph.edge_to[edges[np.isin(graph.edge_type[edges], named)]]
        children = children[graph.node_type[children] == graph.type_code("object")]
        # only a child keeping COVER of the holder can be the one: look at the largest few
        children = children[np.argsort(-tree.retained[children], kind="stable")[:32]]
        best, best_keeps = -1, 0
        for child in children.tolist():
            kept = collection_of(graph, tree, child)[1]
            if node_label(graph, child) in COLLECTIONS and kept > best_keeps:
                best, best_keeps = child, kept
        if best < 0 or best_keeps < COVER * keeps:
            return node
        node = best
    return node


def _owner_of(tree: DominatorTree, owners: list[int]) -> np.ndarray:
    """Return per node the index in `owners` of the owner it lies under (-1 for none)."""
    import numpy as np

    label = np.full(len(tree.idom), -1, dtype=np.int64)
    label[owners] = np.arange(len(owners))
    up = np.where(tree.idom >= 0, tree.idom, np.arange(len(tree.idom)))
    while True:
        take = (label < 0) & (label[up] >= 0)
        label[take] = label[up][take]
        nxt = up[up]
        if not ((label < 0) & (nxt != up)).any():
            return label
        up = np.where(label < 0, nxt, up)


def _sample(
    graph: HeapGraph, tree: DominatorTree, added: np.ndarray
) -> tuple[str | None, list[str]]:
    """Return the path of the new object nearest to its owner (the largest among equals)
    and the closures on it; a closure added is named with its script line."""
    import numpy as np

    if not len(added):
        return None, []
    named = added[graph.node_type[added] != graph.type_code("hidden")]
    pool = named if len(named) else added
    best = pool[np.lexsort((-tree.retained[pool], tree.depth[pool]))[0]]
    expression, closures = path_expression(graph, tree, int(best))
    if graph.node_types[int(graph.node_type[best])] == "closure":
        closures = [*closures, closure_location(graph, int(best))]
    return expression, list(dict.fromkeys(closures))


def _types_of(graph: HeapGraph, nodes: np.ndarray) -> list[tuple[str, int, int]]:
    """Return (constructor, count, self bytes) of `nodes`, most bytes first."""
    import numpy as np

    from memdiag.analysis.heapsummary import constructor_keys

    if not len(nodes):
        return []
    group, names = constructor_keys(graph)
    keys = group[nodes]
    count = np.bincount(keys, minlength=len(names))
    size = np.bincount(keys, weights=graph.self_size[nodes], minlength=len(names))
    ranked = np.argsort(-size, kind="stable")
    return [(names[i], int(count[i]), int(size[i])) for i in ranked.tolist() if count[i]]


def _root_kind(graph: HeapGraph, tree: DominatorTree, node: int) -> str:
    """Return where the path to `node` starts as code: a variable (of a script or a closure's
    scope) or a global property."""
    cur = node
    while tree.parent[cur] >= 0:
        if graph.edge_types[int(graph.edge_type[int(tree.parent_edge[cur])])] == "context":
            return "variable"
        cur = int(tree.parent[cur])
    return "global"


def between_snapshots_native(memory: Sequence[Any], settings: LeakSettings) -> NativeGrowth | None:
    """Return the RSS a node process gained between its snapshots beyond what V8 took from
    the system meanwhile (`SnapshotMemory` per snapshot, warm-up left out), by the leak rule
    with `native_min_bytes` as its floor; None when it gained none, or V8 did not say.

    Only the time between snapshots counts: taking a snapshot leaves the process larger by
    itself (its working memory, partly kept), which is not the program's, and grows with the
    heap (4 MB an interval on a 6 MB job snapshotted every 0.5 s, against 1 MB without). The
    RSS before each snapshot must grow too, beyond V8's memory, and the smaller of the two
    readings is the growth."""
    window = list(memory[settings.warmup :]) if len(memory) > settings.warmup else []
    if len(window) < 2 or any(
        m.committed_before is None or m.committed_after is None for m in window
    ):
        return None
    own = [0.0]
    taken = [0.0]
    for done, nxt in itertools.pairwise(window):
        grown = nxt.committed_before - done.committed_after
        taken.append(taken[-1] + grown)
        own.append(own[-1] + (nxt.rss_before - done.rss_after) - grown)
    native, v8 = trend(own), trend(taken)
    rss = trend([m.rss_before for m in window])
    overall = rss.per_step - max(trend([m.committed_before for m in window]).per_step, 0.0)
    # Both readings must grow: RSS also rises between snapshots as garbage piles up and falls
    # at each snapshot's collection, so the gains between them alone overstate a steady heap.
    floor = settings.native_min_bytes
    if not grows(native, settings, floor) or not grows(rss, settings, floor) or overall < floor:
        return None
    per_step = min(native.per_step, overall)
    if per_step < 0.5 * max(v8.per_step, 0.0):
        return None
    return NativeGrowth(
        round(rss.per_step), round(v8.per_step), round(per_step), native.grew, native.steps
    )


def node_leak_report(
    snaps: Sequence[Snapshot],
    sizes: Sequence[ObjectSizes],
    last: tuple[HeapGraph, DominatorTree] | None,
    settings: LeakSettings,
    memory: Sequence[Any] = (),
) -> LeakReport:
    """Return the leak report of a series of V8 snapshots: the leaking constructors by the
    leak rule (`find_leaks` on their self sizes), the growing objects matched by V8 node id,
    and their owners with their share of the V8 heap's growth per interval.

    Native growth (`between_snapshots_native`, from `memory`): the RSS gained between the
    snapshots beyond V8's own memory, as worker threads and addons gain it.
    """
    from memdiag.analysis.leaks import _window, find_leaks, heap_trend, owners

    report = find_leaks(snaps, settings, unit="interval")
    report.native = between_snapshots_native(memory, settings)
    report.heap_basis, report.pid = "v8", snaps[0].pid
    skip = settings.warmup if len(sizes) > settings.warmup else len(sizes) - 1
    window = list(sizes[skip:])
    if last is None or len(window) < 2:
        return report
    growing = growing_objects(window, settings)
    graph, tree = last
    names = [t.name for t in report.types]
    entries = growth_owners(graph, tree, growing, window[0].ids, names)
    entries.sort(key=lambda e: -float(e["retained_bytes"]))
    heap = heap_trend(_window(list(snaps), settings))
    report.heap_bytes_per_iteration = round(heap.per_step, 1)
    found, total = owners(entries, heap.per_step, report.types)
    for owner, entry in zip(found, entries, strict=True):
        owner.node_id, owner.sample, owner.closures = (
            entry["node_id"],
            entry["sample"],
            entry["closures"],
        )
    report.owners = found
    report.growth_bytes_per_iteration = total if found else None
    return report
