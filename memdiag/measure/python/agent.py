"""Runs inside a Python process memdiag did not start: snapshots it and names what holds it.

Loaded in a thread of its own, by the loader memdiag injects (`memdiag.measure.attach.loader`)
or by the cooperative agent's socket (`memdiag.agent`). The work is the same as in memdiag's
own child (`memdiag.measure.python.snapshot`): one full collection in the process, then the
objects counted in a forked copy, so the service's other threads wait only for the collection
and the fork. Nothing is kept here between requests. Standard library only.

A request (JSON) says what to write into its directory `dir`:

- `snapshot.json`: the Snapshot, labelled `label`, with `owners` module globals retaining the
  most; with `trace_s`, `before.json` first (`before_label`), then tracemalloc on for
  `trace_s` seconds with `frames` frames (if memdiag started it, it stops it): the sites of
  what the window allocated and still holds;
- with `evidence` (and `trace_s`), then waits for memdiag's `request.json`
  (`memdiag.analysis.leaks.attribution_request`) and writes `evidence.json`: the leaking
  sites' types, the leading leaks' chains and the owners of the window's growth.
"""

from __future__ import annotations

import gc
import json
import os
import time
import tracemalloc
import types
from pathlib import Path

from memdiag.measure.python.snapshot import capture, in_fork

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a visit loads this)

if TYPE_CHECKING:
    from typing import Any

# The module globals reported as owners of a snapshot, and the objects walked under each.
OWNERS = 10
# How long the agent waits for memdiag's attribution request after the traced window.
REQUEST_WAIT_S = 120.0
# What a walk under a global stops at: named things, reached by name, never owned by a value.
_NAMED = (
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.FrameType,
)


def answer(request: dict[str, Any]) -> None:
    """Carry out `request` (see the module docstring), writing its files atomically."""
    out = Path(request["dir"])
    trace_s = request.get("trace_s")
    started = False
    try:
        if trace_s:
            if request.get("before_label"):
                _write(out / "before.json", _snapshot(request["before_label"], 0))
            if not tracemalloc.is_tracing():
                tracemalloc.start(int(request.get("frames", 8)))
                started = True
            time.sleep(float(trace_s))
        _write(out / "snapshot.json", _snapshot(request["label"], int(request.get("owners", 0))))
        if trace_s and request.get("evidence"):
            asked = _await(out / "request.json", float(request.get("wait_s", REQUEST_WAIT_S)))
            if asked is not None:
                _write(
                    out / "evidence.json", {"kind": "evidence", **in_fork(lambda: _evidence(asked))}
                )
    finally:
        if started:
            tracemalloc.stop()


def _snapshot(label: str, owners: int) -> dict[str, Any]:
    """Return the JSON Snapshot of this process, its heap as the live objects' sizes."""
    data = capture(label)
    data["heap_basis"] = "objects"
    data["heap_bytes"] = sum(t["size_bytes"] for t in data["types"])
    data["target"] = _command()
    if owners:
        data["owners"] = in_fork(lambda: {"owners": global_owners(owners)})["owners"]
    return data


def _command() -> str:
    with open("/proc/self/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()


def _walked(obj: Any) -> bool:
    return not isinstance(obj, _NAMED)


def global_owners(most: int = OWNERS) -> list[dict[str, Any]]:
    """Return the `most` module globals retaining the most, largest first.

    A global retains the objects reachable from it through objects that are not modules,
    classes, functions or code (those are reached by name), each counted once, for the
    first global (in import order) that reaches it: the heap-snapshot tools' retained size.
    """
    from memdiag.measure.python.chainroots import RootIndex
    from memdiag.measure.python.chaintext import describe
    from memdiag.measure.python.owners import _retained
    from memdiag.measure.python.snapshot import type_name

    claimed: set[int] = set()
    found: list[dict[str, Any]] = []
    roots = RootIndex.build()
    claimed.update({id(claimed), id(found), id(roots)})
    for root, namespace in roots.starts():
        if root.kind != "module global":
            continue
        for name, value in list(namespace.items()):
            if name.startswith("__") or not _walked(value) or id(value) in claimed:
                continue
            counts, retained, truncated = _retained([value], _walked, claimed, claimed)
            if not retained:
                continue
            chain = describe([root, namespace, value])
            largest = sorted(counts.items(), key=lambda kv: -kv[1][1])[:5]
            found.append(
                {
                    "expression": chain["expression"],
                    "root": chain["root"],
                    "type": type_name(type(value)),
                    "retained_bytes": retained,
                    "retained_objects": sum(c for c, _ in counts.values()),
                    "truncated": truncated,
                    "largest_types": [
                        {"type": n, "count": c, "size_bytes": s} for n, (c, s) in largest
                    ],
                }
            )
    found.sort(key=lambda o: -o["retained_bytes"])
    return found[:most]


def _await(path: Path, wait_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait_s
    while not path.exists():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    asked: dict[str, Any] = json.loads(path.read_text())
    return asked


def _evidence(request: dict[str, Any]) -> dict[str, Any]:
    """Return the sites' types, the leading leaks' chains and the owners of the window's
    growth: new objects are those tracemalloc traced, made in the window and still live."""
    from memdiag.measure.python import refchain
    from memdiag.measure.python.owners import Owners

    sites = [_site(key) for key in request["sites"]]
    names = [t["name"] for t in request["types"]]
    if not sites and not names:
        return {"sites": {}, "types": {}}
    found = refchain.Evidence(set(sites), set(names), set(request["grown_types"]), 1.0)
    groups = {f"site-{i + 1}": found.site_samples.get(s, []) for i, s in enumerate(sites[:3])}
    origins: dict[str, tuple[str, int] | None] = {}
    for index, name in enumerate(names):
        origins[name], groups[f"type-{index + 1}"] = found.type_samples(name, sites)
    search = refchain.find_chains(groups, 6.0, found.containers())
    owners = Owners(
        refchain.is_traced, {id(search), *search.own, id(groups), *map(id, groups.values())}
    )
    owners.add(dict(search.paths.items()))
    tracemalloc.stop()
    evidence: dict[str, Any] = {"sites": {}, "types": {}, "search": search.summary()}
    evidence["owners"] = owners.result()
    labels = {f"site-{i + 1}": f"{s[0]}:{s[1]}" for i, s in enumerate(sites)}
    labels.update({f"type-{i + 1}": n for i, n in enumerate(names)})
    for entry in evidence["owners"]:
        entry["groups"] = [labels.get(g, g) for g in entry["groups"]]
    for index, site in enumerate(sites):
        path = search.paths.get(f"site-{index + 1}")
        evidence["sites"][f"{site[0]}:{site[1]}"] = {
            "type": found.dominant_type(site),
            "chain": _chain(search, f"site-{index + 1}") if path else None,
        }
    for index, name in enumerate(names):
        origin = origins[name]
        evidence["types"][name] = {
            "site": f"{origin[0]}:{origin[1]}" if origin else None,
            "chain": _chain(search, f"type-{index + 1}"),
        }
    return evidence


def _chain(search: Any, group: str) -> dict[str, Any] | None:
    from memdiag.measure.python.chaintext import describe

    path = search.paths.get(group)
    if path is None:
        return None
    chain = describe(path)
    chain["found_by"] = search.found_by.get(group)
    return chain


def _site(key: str) -> tuple[str, int]:
    filename, _, line = key.rpartition(":")
    return filename, int(line)


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
    gc.collect()  # the written text and the counts are garbage now, not the service's
