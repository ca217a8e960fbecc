"""Engines: named jobs that memdiag can run, found in the `memdiag.engines` entry-point group.

The engine protocol
-------------------
An engine is a callable registered under a name::

    [project.entry-points."memdiag.engines"]
    my-sync = "mypkg.jobs:sync_players"

1. It is called in a fresh child process with the run's parameters as keyword arguments
   (`--param batch=50` → `batch=50`; values already parsed as int, float, bool or str).
2. Every parameter has a default, so `memdiag run my-sync` works with none given; the
   defaults are what `memdiag engines` lists.
3. It returns the number of records it processed (used for throughput), or None.
4. It may label its timeline with `memdiag.probe.phase(...)` and `memdiag.probe.progress(...)`.
5. Bad parameters raise an exception (ValueError is usual): memdiag records the run as
   `error` with that message.
6. The first line of its docstring is its one-line description.

Engines are loaded only when named; listing them loads each, and a broken one is reported
by name with its error instead of failing the list.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol

from memdiag.errors import MemdiagError

GROUP = "memdiag.engines"
REFERENCE_HINT = (
    "the reference engines are the distribution memdiag-engines: "
    "pip install ./plugins from a memdiag checkout (make install does it)"
)


class Engine(Protocol):
    """A job: keyword parameters in, number of records processed (or None) out."""

    def __call__(self, **params: Any) -> int | None: ...


@dataclass(frozen=True)
class EngineInfo:
    """What `memdiag engines` shows of one engine; `error` is set when it failed to load."""

    name: str
    target: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def engine_names() -> list[str]:
    """Return the names of the installed engines, sorted, without loading any."""
    return sorted(_entry_points())


def resolve_engine(name: str) -> str:
    """Return the `module:function` an engine name points to, without importing it."""
    found = _entry_points().get(name)
    if found is None:
        known = ", ".join(engine_names())
        if not known:
            raise MemdiagError(f"unknown engine {name!r}: no engines installed; {REFERENCE_HINT}")
        raise MemdiagError(f"unknown engine {name!r} (installed engines: {known})")
    return found.value


def describe(name: str, ep: EntryPoint) -> EngineInfo:
    """Load one engine and return its description and parameter defaults."""
    try:
        func = ep.load()
        signature = inspect.signature(func)
    except Exception as exc:  # a broken third-party engine must not break the listing
        return EngineInfo(name, ep.value, error=f"{type(exc).__name__}: {exc}")
    params = {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    doc = inspect.getdoc(func) or ""
    return EngineInfo(name, ep.value, doc.strip().splitlines()[0] if doc else "", params)


def describe_engines() -> list[EngineInfo]:
    """Return every installed engine's description, broken ones included, sorted by name."""
    return [describe(name, ep) for name, ep in sorted(_entry_points().items())]
