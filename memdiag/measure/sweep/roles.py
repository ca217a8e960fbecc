"""The two roles of a sweep's measuring: who is told about runs, and who measures them.

`grid.run_sweep` (this machine) and `cluster.ClusterExecutor` (a dask cluster) both play
`SweepRunner`; the CLI's saver plays `SweepListener`. `executor.open_runner` chooses one.
"""

from __future__ import annotations

from typing import Any, Protocol

from memdiag.measure.process.runner import RunOptions
from memdiag.model import Run, RunError
from memdiag.targets import Target

# A run memdiag itself could not measure (a launcher or a worker lost, memdiag's own
# exception) is tried this many times in all before it is recorded as such
# (Run.infrastructure).
ATTEMPTS = 2


class SweepListener(Protocol):
    """Told when a run starts and when it has finished (always from the calling thread)."""

    def started(self, params: dict[str, Any]) -> None: ...

    def finished(self, run: Run) -> None: ...


class SweepRunner(Protocol):
    """Measures runs for a sweep: `run_sweep` itself, or a cluster's executor (same call)."""

    def __call__(
        self,
        target: Target,
        todo: list[dict[str, Any]],
        options: RunOptions,
        listener: SweepListener,
        jobs: int = 1,
    ) -> None: ...


def lost_run(target: Target, params: dict[str, Any], message: str, kind: str = "WorkerLost") -> Run:
    """Return the `error` Run recorded for a run memdiag could not measure: not the job's
    failure but memdiag's, said in `infrastructure`."""
    from datetime import UTC, datetime

    return Run(
        target=target.text,
        params=dict(params),
        status="error",
        peak_rss_bytes=0,
        wall_s=0.0,
        cpu_s=0.0,
        error=RunError(kind, message),
        started_at=datetime.now(UTC).isoformat(),
        infrastructure=message,
    )


def describe(exc: BaseException) -> str:
    """Return an exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
