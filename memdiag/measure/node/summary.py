"""Reads a V8 `.heapsnapshot` file into memdiag's Snapshot model (in memdiag, not in node).

The graph is read by `heapsnapshot.py`; dominators and the summary are pure analysis
(`analysis/dominators.py`, `analysis/heapsummary.py`) of that graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memdiag.measure.node.heapsnapshot import is_heapsnapshot, read_heapsnapshot

if TYPE_CHECKING:
    from memdiag.analysis.dominators import DominatorTree
    from memdiag.measure.node.heapsnapshot import HeapGraph
    from memdiag.model import Snapshot


def require_node_extra() -> None:
    """Raise a one-line MemdiagError naming the extra when numpy is not installed."""
    import importlib.util

    from memdiag.errors import MemdiagError

    if importlib.util.find_spec("numpy") is None:
        raise MemdiagError("V8 heap snapshots need numpy: pip install 'memdiag[node]'")


def snapshot_from_heapsnapshot(path: str, label: str | None = None, top: int = 20) -> Snapshot:
    """Return the Snapshot model of the `.heapsnapshot` at `path` (`heap_basis` "v8"):
    `types` by constructor with self sizes, `constructors` with retained sizes, `retainers`."""
    import os

    from memdiag.analysis.dominators import dominator_tree

    require_node_extra()
    graph = read_heapsnapshot(path)
    snap = snapshot_of_graph(graph, dominator_tree(graph), label or os.path.basename(path), top)
    snap.time_s = os.stat(path).st_mtime
    snap.heapsnapshot = str(path)
    return snap


def snapshot_of_graph(graph: HeapGraph, tree: DominatorTree, label: str, top: int = 20) -> Snapshot:
    """Return the Snapshot model of a heap graph already read, with its dominator tree."""
    from memdiag.analysis.heapsummary import summarise
    from memdiag.model import Snapshot, TypeStat

    summary = summarise(graph, tree, top_constructors=200, top_retainers=top)
    return Snapshot(
        label=label,
        time_s=0.0,
        heap_bytes=summary.heap_bytes,
        heap_basis="v8",
        frames=0,
        types=[TypeStat(c["name"], c["count"], c["self_bytes"]) for c in summary.constructors],
        constructors=summary.constructors,
        retainers=summary.retainers,
        heap_nodes=summary.node_count,
    )


def load_any_snapshot(path: str) -> Snapshot:
    """Return a snapshot JSON file, or the summary of a `.heapsnapshot`, as a Snapshot."""
    from memdiag.model import load_snapshot

    return snapshot_from_heapsnapshot(path) if is_heapsnapshot(path) else load_snapshot(path)
