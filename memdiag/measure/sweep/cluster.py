"""Running a sweep's runs on a dask.distributed cluster: one run per task, one task per worker.

The same role as `run_sweep` (measure/sweep/grid.py), on other machines: each run is a task with
`resources={"memdiag": 1}` that executes the launcher and child of a local run on the
worker's machine (measure/sweep/worker.py). Results stream back as they finish, so the CLI
saves after every run as for a local sweep. dask is imported only here, only when a sweep
is given `--cluster`.
"""

from __future__ import annotations

import logging
import re
import signal
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from memdiag.errors import MemdiagError
from memdiag.measure.process.runner import RunOptions
from memdiag.measure.sweep.roles import ATTEMPTS, describe, lost_run
from memdiag.model import Run
from memdiag.targets import Target

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

    from memdiag.measure.sweep.roles import SweepListener

RESOURCE = "memdiag"
CONNECT_TIMEOUT_S = 10.0
# How long to wait for a worker offering the memdiag resource (workers may still be starting).
WORKERS_TIMEOUT_S = 30.0
# On Ctrl-C, how long running tasks get to stop their jobs before memdiag leaves.
STOP_TIMEOUT_S = 20.0
WORKER_COMMAND = "dask worker {address} --nthreads 1 --resources memdiag=1 --memory-limit 0"
_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d+)$")


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: a scheduler's `address`, or `local` workers started for this sweep."""

    text: str
    address: str | None = None
    local_workers: int = 0


def parse_cluster(text: str) -> ClusterSpec:
    """Return the spec of `tcp://HOST:PORT` (tls://, ws://, wss://; a bare HOST:PORT is tcp)
    or `local:N`; anything else is a MemdiagError."""
    text = text.strip()
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise MemdiagError(f"--cluster {text!r}: local:N needs a whole number of workers >= 1")
        return ClusterSpec(text, local_workers=int(count))
    match = _ADDRESS.match(text)
    if not match or not 0 < int(match.group(3)) < 65536:
        raise MemdiagError(
            f"--cluster {text!r} is not a scheduler address (tcp://HOST:PORT) or local:N"
        )
    scheme = match.group(1) or "tcp"
    return ClusterSpec(text, address=f"{scheme}://{match.group(2)}:{match.group(3)}")


class ClusterExecutor:
    """A connection to a cluster, used as a context manager; calling it runs a sweep's runs.

    Entering connects (or starts the local workers), waits for a worker with the memdiag
    resource and checks on every such worker that `target` resolves there. Any failure is
    one line (MemdiagError, exit code 2).
    """

    def __init__(self, spec: ClusterSpec, target: Target) -> None:
        self.spec = spec
        self.target = target
        self.client: Client | None = None
        self.cluster: LocalCluster | None = None
        # One flag per sweep: set on Ctrl-C, watched by the running tasks (a running dask
        # task is not interrupted by a cancel).
        self.flag = f"memdiag-cancel-{uuid.uuid4().hex}"

    def __enter__(self) -> ClusterExecutor:
        try:
            self.client = self._connect()
            self._preflight(self._wait_for_workers())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect, and stop the local workers when this sweep started them."""
        for part in (self.client, self.cluster):
            if part is not None:
                try:
                    part.close()
                except Exception:  # closing a half-broken connection must not hide the cause
                    pass
        self.client = self.cluster = None

    def _connect(self) -> Client:
        from distributed import Client, LocalCluster

        # dask's own logging would print tracebacks for every lost connection: the sweep
        # reports what matters as one line.
        for name in ("distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if self.spec.local_workers:
            # Ctrl-C reaches the whole process group: the local workers must ignore it (they
            # inherit the disposition) and leave memdiag to stop their jobs, as on a cluster.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self.cluster = LocalCluster(
                    n_workers=self.spec.local_workers,
                    threads_per_worker=1,
                    processes=True,
                    resources={RESOURCE: 1},
                    memory_limit=0,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,
                )
            finally:
                signal.signal(signal.SIGINT, previous)
            return Client(self.cluster, timeout=CONNECT_TIMEOUT_S)
        try:
            return Client(self.spec.address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise MemdiagError(
                f"--cluster: cannot reach the scheduler at {self.spec.address} "
                f"within {CONNECT_TIMEOUT_S:.0f} s ({type(exc).__name__})"
            ) from None

    def slots(self) -> dict[str, int]:
        """Return each worker's memdiag resource (runs at a time), for the workers with one."""
        assert self.client is not None
        workers = self.client.scheduler_info()["workers"]
        found = {addr: int(w.get("resources", {}).get(RESOURCE, 0)) for addr, w in workers.items()}
        return {addr: n for addr, n in found.items() if n > 0}

    def _wait_for_workers(self) -> dict[str, int]:
        deadline = time.monotonic() + WORKERS_TIMEOUT_S
        while not (slots := self.slots()):
            if time.monotonic() > deadline:
                command = WORKER_COMMAND.format(address=self.spec.address or "ADDRESS")
                raise MemdiagError(
                    f"--cluster {self.spec.text}: no worker offers the resource "
                    f"{RESOURCE}=1 after {WORKERS_TIMEOUT_S:.0f} s; start workers with `{command}`"
                )
            time.sleep(0.2)
        return slots

    def _preflight(self, slots: dict[str, int]) -> None:
        """Check on each worker that the target resolves there; the first failure is an error."""
        from memdiag.measure.sweep.worker import PREFLIGHT_TIMEOUT_S, preflight

        assert self.client is not None
        checks = {
            addr: self.client.submit(
                preflight,
                self.target,
                workers=[addr],
                allow_other_workers=False,
                resources={RESOURCE: 1},
                pure=False,
                key=f"memdiag-preflight-{uuid.uuid4().hex}",
            )
            for addr in slots
        }
        deadline = time.monotonic() + PREFLIGHT_TIMEOUT_S + 30
        for addr, future in sorted(checks.items()):
            try:
                reason = future.result(timeout=max(1.0, deadline - time.monotonic()))
            except Exception as exc:
                reason = describe(exc)
            if reason:
                raise MemdiagError(f"worker {addr}: {self.target.text} cannot run there: {reason}")

    def __call__(
        self,
        target: Target,
        todo: list[dict[str, Any]],
        options: RunOptions,
        listener: SweepListener,
        jobs: int = 1,
    ) -> None:
        """Measure each params in `todo` on the cluster, as many at a time as the workers
        offer memdiag slots (`jobs` is for local sweeps); hand each Run to `listener`.

        A run memdiag could not measure (its worker died more often than the scheduler's
        allowed failures, or memdiag's own code raised on the worker) is submitted once more,
        then recorded as `error` with `infrastructure` saying why: no verdict about the job.
        Bad input on a worker and Ctrl-C stop the sweep: pending tasks are cancelled and
        running jobs stopped on their workers, then it is re-raised.
        """
        from distributed import as_completed

        client = self.client
        assert client is not None
        queue = iter(todo)
        running: dict[Future[Any], tuple[dict[str, Any], int]] = {}
        stream = as_completed()

        def submit(again: dict[str, Any] | None = None, attempt: int = 1) -> bool:
            params = next(queue, None) if again is None else again
            if params is None:
                return False
            if again is None:
                listener.started(params)
            future = client.submit(
                _task,
                target,
                params,
                options,
                self.flag,
                resources={RESOURCE: 1},
                pure=False,
                key=f"memdiag-run-{uuid.uuid4().hex}",
            )
            running[future] = (params, attempt)
            stream.add(future)
            return True

        def fill() -> None:
            wanted = max(1, sum(self.slots().values()))
            while len(running) < wanted and submit():
                pass

        try:
            fill()
            for future in stream:
                params, attempt = running.pop(future)
                run = self._result(target, params, future)
                if run.infrastructure is not None and attempt < ATTEMPTS:
                    submit(params, attempt + 1)  # memdiag's failure, not the job's
                    continue
                listener.finished(run)
                fill()
        except BaseException:
            self._stop(list(running))
            raise

    def _result(self, target: Target, params: dict[str, Any], future: Future[Any]) -> Run:
        """Return the Run a task produced, or an `error` Run with `infrastructure` set when
        memdiag could not measure it there."""
        from distributed import KilledWorker

        try:
            outcome = future.result()
        except KilledWorker as exc:
            return lost_run(target, params, f"worker lost ({exc.last_worker.address})")
        except Exception as exc:  # memdiag's own code raised on the worker
            message = f"memdiag failed on the worker: {describe(exc)}"
            return lost_run(target, params, message, kind=type(exc).__name__)
        if "bad_input" in outcome:
            raise MemdiagError(f"worker {outcome['worker']}: {outcome['bad_input']}")
        if "cancelled" in outcome:  # its worker was told to drop it: nothing was measured
            return lost_run(target, params, "stopped on its worker", kind="Cancelled")
        return Run.from_dict(outcome["run"])

    def _stop(self, futures: list[Future[Any]]) -> None:
        """Cancel pending runs and stop running jobs, waiting (bounded) until they are gone."""
        from distributed import Event, wait

        if self.client is None or not futures:
            return
        try:
            Event(self.flag, client=self.client).set()
            wait(futures, timeout=STOP_TIMEOUT_S)
        except Exception:
            pass  # best effort: each launcher also stops its job when its worker goes away
        finally:
            self.client.cancel(futures)


def _task(target: Target, params: dict[str, Any], options: RunOptions, flag: str) -> Any:
    # A module-level function by reference: workers import memdiag.measure.sweep.worker.
    from memdiag.measure.sweep.worker import run_task

    return run_task(target, params, options, flag)
