"""Chooses who measures a sweep's runs: this machine (`grid.run_sweep`) or a dask cluster.

Both play `roles.SweepRunner` and report to the same listener, so neither imports the other:
this module is the only one that knows both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from memdiag.errors import MemdiagError
from memdiag.measure.sweep.roles import SweepRunner
from memdiag.targets import Target


@contextmanager
def open_runner(cluster: str | None, target: Target) -> Iterator[SweepRunner]:
    """Yield what measures the runs: `run_sweep` here, or, with `cluster` (a scheduler's
    address or `local:N`), an executor on that dask cluster, connected and checked for
    `target` on every worker, closed on exit. Every measuring call of a sweep goes through it.
    """
    if not cluster:
        from memdiag.measure.sweep.grid import run_sweep

        yield run_sweep
        return
    try:
        import distributed  # noqa: F401

        from memdiag.measure.sweep.cluster import ClusterExecutor, parse_cluster
    except ImportError:
        raise MemdiagError(
            "--cluster needs dask.distributed: pip install 'memdiag[cluster]'"
        ) from None
    with ClusterExecutor(parse_cluster(cluster), target) as executor:
        yield executor
