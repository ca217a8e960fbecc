"""Dominator tree and retained sizes of a V8 heap graph, in numpy (no Python loop per node).

An object's retained size is what the collector would free with it: its own size and that of
every object reachable only through it, the sum over its subtree in the dominator tree.

The dominators are the greatest fixed point of `dom(v) = {v} + the intersection of dom(p)
over v's retainers p` (Cooper, Harvey and Kennedy's iterative algorithm), started from the
breadth-first tree. The work is done on nodes renumbered in breadth-first order: a dominator
is on every path from the root, so it lies on a shallower level than the node and gets a
smaller number. Two things follow. The intersection of two chains is found as Cooper, Harvey
and Kennedy find it, by moving up whichever finger has the larger number; and the levels
can be visited in order, so that when a level is visited the dominators of its retainers on
shallower levels are already this pass's. One pass then settles almost everything (a
retainer on a deeper level, a back or cross edge, can ask for another), and the next pass
confirms. A node with one retainer is dominated by it. Weak edges do not retain.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from memdiag.measure.node.heapsnapshot import HeapGraph

# Levels are visited in slices of at least this many retainer pairs: a deep chain of small
# levels (a linked list) costs one numpy step per slice, not one per level.
SLICE_PAIRS = 1 << 16
# At most this many retainer pairs (or edges of a breadth-first level) are worked on at once:
# each costs about 40 bytes of temporary arrays while it is.
CHUNK = 1 << 18
# Retainer pairs met at once: the tournament's temporaries cost about 70 bytes a pair.
SETTLE_CHUNK = 1 << 17


class Parents:
    """Each node's breadth-first retainer, read from the edge it was reached by (the edge's
    owner: the node whose edges hold it), -1 where none; indexed as an array is, by a node or
    a slice. Not kept as an array of its own: 4 bytes a node, twice (the root's paths and the
    global objects')."""

    def __init__(self, graph: HeapGraph, parent_edge: np.ndarray) -> None:
        self.graph, self.parent_edge = graph, parent_edge

    def __len__(self) -> int:
        return len(self.parent_edge)

    def __getitem__(self, index: Any) -> Any:
        import numpy as np

        edge = self.parent_edge[index]
        owner = self.graph.edge_owners(edge)
        if np.ndim(edge) == 0:
            return int(owner) if edge >= 0 else -1
        return np.where(edge >= 0, owner, -1)


@dataclass
class DominatorTree:
    """`idom[v]`: v's immediate dominator (-1 for the root and unreachable nodes);
    `parent[v]`/`parent_edge[v]`: the breadth-first retainer of v and the edge from it (a
    shortest path from the root, -1 where none); `depth`: depth in the dominator tree
    (computed when first asked for: only the leak series use it); `retained`: retained
    sizes in bytes (0 where unreachable)."""

    idom: np.ndarray
    parent: Parents
    parent_edge: np.ndarray
    retained: np.ndarray
    _depth: np.ndarray | None = None

    @property
    def depth(self) -> np.ndarray:
        if self._depth is None:
            self._depth = tree_depths(self.idom)
        return self._depth


def tree_depths(idom: np.ndarray) -> np.ndarray:
    """Return each node's depth in the tree `idom` (by node; 0 for roots and unreached), by
    pointer jumping: `dist[v]` is the number of steps from v to `jump[v]`, and each round
    adds the steps of the node jumped to and jumps as far as it does (log₂ of the depth
    rounds, a few for a heap)."""
    import numpy as np

    dist = (idom >= 0).astype(np.int32)
    jump = idom.astype(np.int32, copy=True)
    live = np.flatnonzero(jump >= 0)
    while len(live):
        up = jump[live]
        dist[live] += dist[up]
        jump[live] = jump[up]
        live = live[jump[live] >= 0]
    return dist


@dataclass
class _Order:
    """The reached nodes in breadth-first order: `nodes[k]` is the k-th, `rank[v]` v's number
    (-1: unreached), `levels` the numbers where each level starts (and the count at the end)."""

    nodes: np.ndarray
    rank: np.ndarray
    levels: np.ndarray


def dominator_tree(graph: HeapGraph, root: int = 0) -> DominatorTree:
    """Return the dominator tree of `graph` from node `root` (V8's synthetic root is node 0)."""
    import numpy as np

    from memdiag.measure.process.rollup import give_back

    # Weak edges do not retain; looked up a chunk at a time (a whole-graph mask is 1 byte an edge).
    weak = graph.edge_code("weak")
    parent_edge, order = _breadth_first(graph, weak, root)
    assert order is not None
    parent_edge = _spilled(graph, parent_edge)
    give_back()  # each stage's temporaries, before the next stage's (glibc keeps them)
    parent = Parents(graph, parent_edge)
    # By number: the breadth-first tree (root -1), a slice at a time (the owners of the
    # edges are found as 64-bit positions).
    idom_k = np.empty(len(order.nodes), dtype=np.int32)
    for lo in range(0, len(idom_k), CHUNK):
        idom_k[lo : lo + CHUNK] = order.rank[parent[order.nodes[lo : lo + CHUNK]]]
    idom_k[0] = -1
    keys, targets, preds = _retainer_pairs(graph, weak, order)
    nodes, levels = order.nodes, order.levels
    del order  # and the ranks: the numbers are all that is used from here
    give_back()
    _refine(idom_k, keys, targets, preds, levels)
    del keys, targets, preds
    give_back()
    # Back from numbers to nodes one array at a time, each number's copy freed before the next.
    n = graph.node_count
    retained = np.zeros(n, dtype=np.int64)
    retained[nodes] = _retained(idom_k, levels, graph.self_size[nodes].astype(np.int64))
    graph.release_pages()
    idom = np.full(n, -1, dtype=np.int32)
    idom[nodes[1:]] = nodes[idom_k[1:]]
    del nodes, idom_k
    give_back()
    return DominatorTree(idom, parent, parent_edge, retained)


def _breadth_first(
    graph: HeapGraph,
    weak: int,
    root: int,
    first: np.ndarray | None = None,
    keep_order: bool = True,
) -> tuple[np.ndarray, _Order | None]:
    """Return the breadth-first parent edge of every node (-1: none; its owner is the
    parent, see `Parents`) and the order of the visit (None without `keep_order`); of
    several edges found in one level to a node, the first one wins.

    With `first` (edges leaving `root`), the nodes they lead to are visited, and everything
    they reach, before the rest of the graph is visited from `root`.
    """
    import numpy as np

    n, first_edge, to = graph.node_count, graph.first_edge, graph.edge_to
    parent_edge = np.full(n, -1, dtype=np.int64 if len(to) >= 2**31 else np.int32)
    # Without the order, a node only needs to be marked seen: a byte, not a number.
    rank = np.full(n, -1, dtype=np.int32 if keep_order else np.int8)
    rank[root] = 0
    found, levels = [np.array([root], dtype=np.int32)], [0, 1]
    starts = [np.array([root], dtype=np.int64)]
    if first is not None and len(first):
        chosen = first[np.sort(np.unique(to[first], return_index=True)[1])]
        chosen = chosen[to[chosen] != root]
        frontier = to[chosen].astype(np.int64)
        parent_edge[frontier] = chosen
        rank[frontier] = np.arange(1, 1 + len(frontier)) if keep_order else 0
        found.append(frontier.astype(np.int32))
        levels.append(1 + len(frontier))
        starts.insert(0, frontier)
    for frontier in starts:
        while len(frontier):
            level = []
            counts = first_edge[frontier + 1] - first_edge[frontier]
            ends = np.cumsum(counts, dtype=first_edge.dtype)  # int32 where the offsets are
            lo = 0
            while lo < len(frontier):  # about CHUNK edges at a time, in the frontier's order
                hi = max(int(np.searchsorted(ends, ends[lo] - counts[lo] + CHUNK)), lo + 1)
                chunk = frontier[lo:hi]
                level.append(
                    _visit(chunk, first_edge, to, graph.edge_type, weak, rank, parent_edge)
                )
                rank[level[-1]] = 0  # found: a later chunk's edges to it come second
                lo = hi
            frontier = np.concatenate(level) if level else frontier[:0]
            del level
            rank[frontier] = np.arange(levels[-1], levels[-1] + len(frontier)) if keep_order else 0
            if keep_order:  # int32: the whole visit is kept until the end
                found.append(frontier.astype(np.int32, copy=False))
            levels.append(levels[-1] + len(frontier))
    if not keep_order:
        return parent_edge, None
    nodes = np.concatenate(found)
    del found
    return parent_edge, _Order(nodes, rank, np.array(levels[:-1], dtype=np.int64))


def _visit(
    frontier: np.ndarray,
    first_edge: np.ndarray,
    to: np.ndarray,
    edge_type: np.ndarray,
    weak: int,
    rank: np.ndarray,
    parent_edge: np.ndarray,
) -> np.ndarray:
    """Return the nodes not visited yet (`rank` -1) that the strong edges of `frontier` lead
    to, setting their parent edge: of several edges to a node, the first one in the
    frontier's order."""
    import numpy as np

    begin = first_edge[frontier]
    counts = first_edge[frontier + 1] - begin
    offsets = np.repeat(begin - np.cumsum(counts) + counts, counts)
    offsets += np.arange(len(offsets))
    keep = edge_type[offsets] != weak
    keep &= rank[to[offsets]] < 0
    offsets = offsets[keep]
    targets = to[offsets].astype(np.int64)
    slot = np.argsort(targets, kind="stable")  # stable: the first edge found comes first
    targets, offsets = targets[slot], offsets[slot]
    head = np.r_[True, targets[1:] != targets[:-1]][: len(targets)]
    found: np.ndarray = targets[head].astype(np.int32)  # a level is kept whole: 4 bytes a node
    parent_edge[found] = offsets[head]
    return found


def user_root_paths(graph: HeapGraph, root: int = 0) -> tuple[Parents, np.ndarray]:
    """Return per node a retainer and the edge from it on a shortest path from the JavaScript
    global objects (the root's shortcut edges), or from the root where none reaches it.

    These are the paths Chrome DevTools shows: a Set held both by a global variable and by a
    stack slot of the code running is reached through the variable, which has a name.
    """
    import numpy as np

    edges = np.arange(int(graph.first_edge[root]), int(graph.first_edge[root + 1]))
    shortcuts = edges[graph.edge_type[edges] == graph.edge_code("shortcut")]
    weak = graph.edge_code("weak")
    parent_edge, _ = _breadth_first(graph, weak, root, shortcuts, keep_order=False)
    parent_edge = _spilled(graph, parent_edge)
    return Parents(graph, parent_edge), parent_edge


def _spilled(graph: HeapGraph, values: np.ndarray) -> np.ndarray:
    """Return `values` out of this process's memory, mapped back from a file (`Spill`):
    the breadth-first edges are read a path at a time, a few pages of them."""
    from memdiag.measure.node.heapsnapshot import spill

    return spill(values, graph.mapped)


def _retainer_pairs(
    graph: HeapGraph, weak: int, order: _Order
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (target, retainer) numbers of the strong edges into nodes with two or more
    retainers, sorted by target (then retainer), as the sorted 64-bit keys `target << 32 |
    retainer` and the two int32 views of their halves; self-references and unreached
    retainers left out. Two passes over the edges, about CHUNK at a time: the retainers
    counted per target, then the keys of the targets with two or more.

    The halves are strided views: a search in them would copy them whole (numpy searches
    contiguous arrays only), so a target's pairs are found in the keys (`_pairs_from`)."""
    import numpy as np

    n = len(order.nodes)
    retainers = np.zeros(n, dtype=np.int32)
    for _, dst in _strong_pairs(graph, weak, order):
        np.add.at(retainers, dst, 1)  # no whole-graph count per chunk
    many = retainers > 1
    key = np.empty(int(retainers[many].sum(dtype=np.int64)), dtype=np.int64)
    del retainers
    at = 0
    for src, dst in _strong_pairs(graph, weak, order):
        multi = many[dst]
        part = key[at : at + int(np.count_nonzero(multi))]
        np.left_shift(dst[multi], 32, out=part, dtype=np.int64)
        part |= src[multi]
        at += len(part)
    key.sort()
    # Numbers are under 2**31: a key's two halves, read as int32, are target and retainer,
    # given as views of the sorted keys (copies would double them while they are made).
    halves = key.view(np.int32).reshape(-1, 2)
    low = 0 if sys.byteorder == "little" else 1
    return key, halves[:, 1 - low], halves[:, low]


def _pairs_from(keys: np.ndarray, target: int) -> int:
    """Return the index of the first pair of `target` or of a later one in the sorted keys."""
    import numpy as np

    if target >= 2**31:
        return len(keys)
    return int(np.searchsorted(keys, np.int64(target) << np.int64(32)))


def _strong_pairs(
    graph: HeapGraph, weak: int, order: _Order
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (retainer, target) numbers of the strong edges between reached nodes, not to the
    root nor to themselves, about CHUNK edges at a time."""
    import numpy as np

    first_edge = graph.first_edge
    n = graph.node_count
    a = 0
    while a < n:
        b = max(int(np.searchsorted(first_edge, first_edge[a] + CHUNK, side="right")) - 1, a + 1)
        b = min(b, n)
        lo, hi = int(first_edge[a]), int(first_edge[b])
        src = np.repeat(order.rank[a:b], np.diff(first_edge[a : b + 1]))
        dst = order.rank[graph.edge_to[lo:hi]]
        keep = (graph.edge_type[lo:hi] != weak) & (src >= 0) & (dst > 0) & (src != dst)
        yield src[keep], dst[keep]
        a = b


def _refine(
    idom: np.ndarray, keys: np.ndarray, targets: np.ndarray, preds: np.ndarray, levels: np.ndarray
) -> None:
    """Lower `idom` (by number, in place) to the dominators: one pass setting each target to
    the common ancestor of its retainers, slice after slice of levels, then rounds over the
    targets whose answer may still move.

    A target whose retainers all come before its slice reads only values this pass has
    already settled, and nothing it read changes later in the pass. Only the targets with a
    retainer in their own slice or after it (`ahead`) can be wrong at the pass's end, unless
    the root dominates them already (a dominator only ever moves up). When a round changes
    nodes, the targets with a retainer under one of them are looked at again."""
    import numpy as np

    if not len(targets):
        return
    bounds = np.searchsorted(keys, levels.astype(np.int64) << 32)
    cuts = [0]
    for at in bounds[1:].tolist():  # slices of whole levels, each of SLICE_PAIRS or more
        if at - cuts[-1] >= SLICE_PAIRS:
            cuts.append(at)
    if cuts[-1] != len(targets):
        cuts.append(len(targets))
    ahead = np.zeros(len(idom), dtype=bool)
    for lo, hi in pairwise(cuts):
        t, p = targets[lo:hi], preds[lo:hi]
        _settle(idom, keys[lo:hi], t, p)
        ahead[t[p >= t[0]]] = True
    ahead[idom <= 0] = False
    pick = ahead[targets]
    while pick.any():
        changed = _settle(idom, keys, targets, preds, pick)
        if not len(changed):
            return
        under = _below(idom, changed, levels)
        pick = ahead[targets]
        pick[np.flatnonzero(under[preds])] = True
        pick = _whole_groups(targets, pick)


def _whole_groups(targets: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """Return `pick` widened to every pair of each target it picks one pair of."""
    import numpy as np

    chosen = np.zeros(int(targets[-1]) + 1, dtype=bool)
    chosen[targets[pick]] = True
    widened: np.ndarray = chosen[targets]
    return widened


def _below(idom: np.ndarray, changed: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Return a mask of the nodes at or under any `changed` node in the tree `idom` (by
    number), level by level."""
    import numpy as np

    mark = np.zeros(len(idom), dtype=bool)
    mark[changed] = True
    for lo, hi in pairwise(levels[1:].tolist()):
        mark[lo:hi] |= mark[idom[lo:hi]]
    return mark


def _settle(
    idom: np.ndarray,
    keys: np.ndarray,
    targets: np.ndarray,
    preds: np.ndarray,
    pick: np.ndarray | None = None,
) -> np.ndarray:
    """Set each target's `idom` to the common ancestor of its retainers (of the pairs in
    `pick` only, whole targets); return the targets that changed. Whole targets at a time,
    about SETTLE_CHUNK pairs each: a later chunk reads what an earlier one set, which only brings
    the answer sooner (a dominator only moves up)."""
    import numpy as np

    found = []
    lo = 0
    while lo < len(targets):
        hi = min(lo + SETTLE_CHUNK, len(targets))
        if hi < len(targets):  # end at a target's first pair: its group stays whole
            hi = _pairs_from(keys, int(targets[hi]))
        if hi <= lo:  # one target with more retainers than a chunk holds: met in slices
            hi = _pairs_from(keys, int(targets[lo]) + 1)
            parts = [
                _picked(targets, preds, pick, at, min(at + SETTLE_CHUNK, hi))
                for at in range(lo, hi, SETTLE_CHUNK)
            ]
            met = [_common_ancestors(idom, t, p) for t, p in parts if len(t)]
            lo = hi
            if not met:
                continue
            nodes, ancestors = met[0]
            for _, more in met[1:]:
                ancestors = _meet(idom, ancestors, more)
        else:
            t, p = _picked(targets, preds, pick, lo, hi)
            lo = hi
            if not len(t):
                continue
            nodes, ancestors = _common_ancestors(idom, t, p)
        moved = idom[nodes] != ancestors
        changed = nodes[moved]
        idom[changed] = ancestors[moved]
        found.append(changed)
    result: np.ndarray = np.concatenate(found) if found else targets[:0]
    return result


def _picked(
    targets: np.ndarray, preds: np.ndarray, pick: np.ndarray | None, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the pairs lo:hi, those in `pick` only (picked per chunk, not copied whole)."""
    t, p = targets[lo:hi], preds[lo:hi]
    if pick is None:
        return t, p
    return t[pick[lo:hi]], p[pick[lo:hi]]


def _common_ancestors(
    idom: np.ndarray, targets: np.ndarray, preds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the targets (sorted, unique) and the common ancestor of each one's retainers in
    the tree `idom`: the retainers of a target are met two by two, as a tournament, so a
    target with many retainers takes a few rounds and no finger waits for another."""
    import numpy as np

    new_target = np.r_[True, targets[1:] != targets[:-1]]
    heads = np.flatnonzero(new_target)
    result = preds[heads].copy()
    group = np.cumsum(new_target, dtype=np.int32) - 1
    del new_target
    fingers = preds
    while True:
        sizes = np.bincount(group, minlength=len(heads))
        left = sizes[group] > 1  # groups of one are done: their finger is the answer
        if not left.any():
            return targets[heads], result
        group, fingers = group[left], fingers[left]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]).astype(np.int32)
        runs = np.diff(np.r_[starts, np.int32(len(group))])
        place = np.arange(len(group), dtype=np.int32) - np.repeat(starts, runs)
        first = np.flatnonzero(place % 2 == 0)
        pair = first + 1 < len(group)
        pair[pair] = group[first[pair] + 1] == group[first[pair]]
        met = fingers[first].copy()
        met[pair] = _meet(idom, fingers[first[pair]], fingers[first[pair] + 1])
        group, fingers = group[first], met
        result[group] = fingers


def _meet(idom: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the common ancestors of `a[i]` and `b[i]` in the tree `idom`, numbers decreasing
    towards the root: the finger with the larger number cannot be an ancestor of the other,
    so it moves up (Cooper, Harvey and Kennedy's intersect)."""
    import numpy as np

    a, b = a.copy(), b.copy()
    apart = np.flatnonzero(a != b)
    while len(apart):
        x, y = a[apart], b[apart]
        up = x > y
        a[apart[up]] = idom[x[up]]
        b[apart[~up]] = idom[y[~up]]
        apart = apart[a[apart] != b[apart]]
    return a


def _retained(idom: np.ndarray, levels: np.ndarray, self_size: np.ndarray) -> np.ndarray:
    """Return subtree sums of `self_size` in the tree `idom` (by number), deepest level first:
    a node's dominated nodes all lie on deeper levels, so its sum is whole when it is added.
    The sums are made in `self_size` itself (the caller's copy)."""
    import numpy as np

    retained = self_size
    for lo, hi in reversed(list(pairwise(levels[1:].tolist()))):
        up = idom[lo:hi]
        base = int(up.min())
        if lo - base <= 8 * (hi - lo):  # a dense range of dominators: one bincount
            sums = np.bincount(up - base, weights=retained[lo:hi], minlength=lo - base)
            retained[base:lo] += sums.astype(np.int64)
        else:
            np.add.at(retained, up, retained[lo:hi])
    return retained
