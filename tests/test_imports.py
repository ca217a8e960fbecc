"""No two memdiag modules import each other, directly or round a longer circle.

Read from the source with `ast`, so a circle is found whether or not the code that imports runs:
imports inside functions and under `TYPE_CHECKING` count too (a lazy import is still a
dependency, and a circle there is one refactoring away from an ImportError).
"""

from __future__ import annotations

import ast
from pathlib import Path

import memdiag

PACKAGE = Path(memdiag.__file__).parent


def module_names() -> dict[str, Path]:
    """Return every module of the package by its dotted name (a package by its own name)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("memdiag", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts).removesuffix(".__init__")
        names[name] = path
    return names


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """Return the memdiag modules `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    # A module's own package (its __init__) and its own submodules are not a circle.
    return {m for m in found if m in known and m != name and not m.startswith(name + ".")}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected groups of two or more modules (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imported(name, path, set(names)) for name, path in names.items()}


def test_no_module_imports_another_that_imports_it() -> None:
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(g) for g in found)


def test_the_check_sees_a_circle_through_a_lazy_import() -> None:
    graph = import_graph()
    # The sweep grid imports the roles; were the roles to import the grid inside a function,
    # as the executor does, the check must see it.
    assert "memdiag.measure.sweep.roles" in graph["memdiag.measure.sweep.grid"]
    graph["memdiag.measure.sweep.roles"] = graph["memdiag.measure.sweep.roles"] | {
        "memdiag.measure.sweep.grid"
    }
    assert ["memdiag.measure.sweep.grid", "memdiag.measure.sweep.roles"] in circles(graph)
    assert "memdiag.measure.sweep.grid" in graph["memdiag.measure.sweep.executor"]
