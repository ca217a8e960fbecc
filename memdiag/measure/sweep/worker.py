"""What a dask worker runs for a cluster sweep: the preflight check and one measured run.

Imported on the workers (by reference, as dask ships functions); dask itself is imported
only inside the functions, so this module stays cheap. A run here is the same launcher and
child as a local run (`measure_run`), started from the worker's process on its machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from memdiag.errors import MemdiagError
from memdiag.measure.process import launcher as child_launcher
from memdiag.measure.process.runner import RunOptions, measure_run
from memdiag.targets import Target

PREFLIGHT_TIMEOUT_S = 120.0
# How often a running task looks at the sweep's cancellation flag (s): Ctrl-C stops the jobs
# on the workers within about this long.
CANCEL_POLL_S = 0.25
# Set by dask in the processes it starts workers from; a job has no use for it.
_DASK_MARKERS = ("__DASK_PARENT_PID",)

# Checks that a Python target imports here, as the measured child would (cwd on sys.path).
_CHECK = """
import sys
from memdiag.measure.python.bootstrap import BadTarget, load_function
kind, location, function = sys.argv[1:4]
if kind == "engine":
    from memdiag.engines import resolve_engine
    from memdiag.errors import MemdiagError
    try:
        resolve_engine(location)
    except MemdiagError as exc:
        sys.exit(exc.message)
    location, function = sys.argv[4:6]
    kind = "module"
try:
    load_function(kind, location, function)
except BadTarget as exc:
    sys.exit(str(exc))
except BaseException as exc:
    sys.exit(f"importing {location} fails: {type(exc).__name__}: {exc}")
"""


def preflight(target: Target) -> str | None:
    """Return why `target` cannot run on this machine (one line), or None when it can.

    Python targets are imported in a fresh interpreter, never in the worker itself.
    """
    if not target.is_python:
        program = target.argv[0]
        if "/" in program:
            path = Path(program)
            return None if path.is_file() and os.access(path, os.X_OK) else f"no program {program}"
        import shutil

        return None if shutil.which(program) else f"{program!r} is not on PATH"
    if target.kind == "file" and not Path(target.location).is_file():
        return f"no such file {target.location}"
    first = target.text if target.kind == "engine" else target.location
    argv = [sys.executable, "-c", _CHECK, target.kind, first, target.function]
    if target.kind == "engine":
        argv += [target.location, target.function]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PREFLIGHT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"importing {target.text} took more than {PREFLIGHT_TIMEOUT_S:.0f} s"
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"the check exited with code {done.returncode}"


def nanny_environment() -> tuple[dict[str, str], tuple[str, ...]]:
    """Return (values to restore, names to drop) that undo what a nanny put in our environment.

    The nanny sets `distributed.nanny.pre-spawn-environ` (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS,
    ...) and `distributed.nanny.environ` before it starts the worker: a job started with them
    would allocate differently from a local run. Each is restored to its value in the nanny's
    own starting environment (what `dask worker` was run with), or dropped when it had none.
    """
    import dask

    names: set[str] = set(_DASK_MARKERS)
    for key in ("distributed.nanny.pre-spawn-environ", "distributed.nanny.environ"):
        names.update(dask.config.get(key, default=None) or {})
    original = _nanny_start_environ()
    if original is None:  # no nanny: nothing was injected, but the markers
        return {}, tuple(n for n in _DASK_MARKERS if n in os.environ)
    restore = {n: original[n] for n in names if n in original}
    return restore, tuple(sorted(n for n in names if n not in original))


def _nanny_start_environ() -> dict[str, str] | None:
    """Return the environment the nanny process was started with, None without a nanny."""
    from distributed import get_worker

    if get_worker().nanny is None:
        return None
    import psutil

    parent = psutil.Process(os.getppid())
    # With the forkserver start method the worker's parent is the server, the nanny's child.
    if any("forkserver" in part for part in parent.cmdline()):
        parent = parent.parent() or parent
    try:
        raw = Path(f"/proc/{parent.pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def run_task(
    target: Target, params: dict[str, Any], options: RunOptions, flag: str
) -> dict[str, Any]:
    """Measure one run on this worker; return {"run": Run JSON}, {"cancelled": True} when the
    sweep's flag was set (its job is stopped), or {"bad_input": message, "worker": name}.
    """
    from distributed import Event, get_worker

    worker = get_worker()
    key = worker.get_current_task()
    cancel = Event(flag)
    if cancel.is_set():  # started after Ctrl-C, before its cancel reached the scheduler
        return {"cancelled": True}
    restore, unset = nanny_environment()
    given = options.env or {}
    options = replace(
        options,
        env={**restore, **given},
        unset_env=tuple(name for name in unset if name not in given),
    )
    outcome: dict[str, Any] = {}

    def measure() -> None:
        try:
            outcome["run"] = measure_run(target, params, options).to_dict()
        except MemdiagError as exc:
            outcome["bad_input"] = exc.message
        except BaseException as exc:  # handed to the task's thread, raised there
            outcome["exception"] = exc

    thread = threading.Thread(target=measure, name="memdiag-cluster-run", daemon=True)
    thread.start()
    cancelled = False
    while thread.is_alive():
        thread.join(CANCEL_POLL_S)
        if thread.is_alive() and not cancelled and (cancel.is_set() or _released(worker, key)):
            cancelled = True
            _stop_launchers()
    if cancelled:
        return {"cancelled": True}
    if "exception" in outcome:
        raise outcome["exception"]
    if "bad_input" in outcome:
        outcome["worker"] = worker.address
    return outcome


def _released(worker: Any, key: Any) -> bool:
    # The scheduler forgets a task whose client cancelled it or went away: its job must stop.
    task = worker.state.tasks.get(key)
    return task is None or task.state in ("cancelled", "released", "forgotten")


def _stop_launchers() -> None:
    """SIGTERM this process's launchers: each kills its job's whole process group and exits."""
    import psutil

    for child in psutil.Process().children():
        try:
            if child_launcher.__file__ in child.cmdline():
                child.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
