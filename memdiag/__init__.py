"""memdiag: memory profiling and diagnostics for batch jobs and long-running services.

Importing `memdiag` is cheap: the public API below is loaded on first use, so a measured
child that only calls `memdiag.probe` carries none of memdiag's own dependencies.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a visit loads this)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = [
    "MemdiagError",
    "MemoryMonitor",
    "Run",
    "__version__",
    "health",
    "load_run",
    "measure_run",
    "probe",
]

_LAZY = {
    "MemdiagError": ("memdiag.errors", "MemdiagError"),
    "MemoryMonitor": ("memdiag.health.monitor", "MemoryMonitor"),
    "health": ("memdiag.health", None),
    "Run": ("memdiag.model", "Run"),
    "load_run": ("memdiag.model", "load_run"),
    "measure_run": ("memdiag.measure.process.runner", "measure_run"),
    "probe": ("memdiag.probe", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'memdiag' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
