"""Runs in the child: imports and calls a Python target, records how it ended.

Run as `python -m memdiag.measure.python.bootstrap SPEC.json`. Standard library only: the child's
memory must be the job's memory, not memdiag's. Exit code 0 when the target returned, 1 when
it failed (the result file says how), 3 when the target itself could not be found.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

EXIT_OK, EXIT_FAILED, EXIT_BAD_TARGET = 0, 1, 3
_CO_VARKEYWORDS = 0x08


class BadTarget(Exception):
    """The target or its parameters do not exist: bad input, not a result."""


class GcTimer:
    """Counts time spent in garbage collection through `gc.callbacks`."""

    def __init__(self) -> None:
        self.pause_s = 0.0
        self._started = 0.0
        self._before = gc.get_stats()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pause_s += time.perf_counter() - self._started

    def result(self) -> dict[str, Any]:
        pairs = list(zip(gc.get_stats(), self._before, strict=True))
        return {
            "collections": [a["collections"] - b["collections"] for a, b in pairs],
            "collected": sum(a["collected"] - b["collected"] for a, b in pairs),
            "uncollectable": sum(a["uncollectable"] - b["uncollectable"] for a, b in pairs),
            "pause_s": round(self.pause_s, 6),
        }


def load_function(kind: str, location: str, function: str) -> Any:
    """Return the target function; BadTarget when its module, file or name does not exist."""
    if kind == "file":
        directory, filename = os.path.split(location)
        name = os.path.splitext(filename)[0]
        sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location(name, location)
        if spec is None or spec.loader is None:
            raise BadTarget(f"cannot import {location}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(location)
        except ModuleNotFoundError as exc:
            if exc.name and (location == exc.name or location.startswith(exc.name + ".")):
                raise BadTarget(f"no module named {location!r}") from None
            raise
    func = getattr(module, function, None)
    if not callable(func):
        raise BadTarget(f"{location} has no function {function!r}")
    return func


def check_params(func: Any, params: dict[str, Any]) -> None:
    """Raise BadTarget when `func` takes none of a given parameter (cheaply, no inspect)."""
    code = getattr(func, "__code__", None)
    if code is None or code.co_flags & _CO_VARKEYWORDS:
        return
    names = code.co_varnames[code.co_posonlyargcount : code.co_argcount + code.co_kwonlyargcount]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise BadTarget(
            f"{func.__name__}() takes no parameter {', '.join(map(repr, unknown))} "
            f"(parameters: {', '.join(names) or 'none'})"
        )


def start_heap_tracking(mode: str | None, path: str | None, native: bool = False) -> Any:
    """Return a started memray Tracker for `--heap` (aggregated) or `--memray` (full)."""
    if not mode or not path:
        return None
    import memray

    file_format = (
        memray.FileFormat.ALL_ALLOCATIONS
        if mode == "full"
        else memray.FileFormat.AGGREGATED_ALLOCATIONS
    )
    tracker = memray.Tracker(path, native_traces=native, file_format=file_format)
    tracker.__enter__()
    return tracker


def describe_error(exc: BaseException) -> dict[str, Any]:
    import traceback

    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


Runner = Callable[[Callable[..., Any], dict[str, Any]], Any]


def call_once(func: Callable[..., Any], spec: dict[str, Any]) -> Any:
    """The default runner: one call with the run's parameters; its return value."""
    return func(**spec["params"])


def call(spec: dict[str, Any], runner: Runner = call_once) -> tuple[dict[str, Any], int]:
    """Run the target through `runner` as `spec` says; return the result record and the
    exit code. Other child entry points (snapshot, leaks) pass a runner of their own."""
    try:
        func = load_function(spec["kind"], spec["location"], spec["function"])
        check_params(func, spec["params"])
    except BadTarget as exc:
        return {"status": "bad-target", "message": str(exc)}, EXIT_BAD_TARGET
    except BaseException as exc:
        return {"status": "error", "error": describe_error(exc)}, EXIT_FAILED
    timer = GcTimer()
    gc.callbacks.append(timer)
    tracker = start_heap_tracking(
        spec.get("heap"), spec.get("heap_path"), spec.get("native", False)
    )
    status, records, error = "ok", None, None
    try:
        returned = runner(func, spec)
        if isinstance(returned, int) and not isinstance(returned, bool):
            records = returned
    except MemoryError as exc:
        status, error = "oom", describe_error(exc)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status, error = "error", describe_error(exc)
    except BaseException as exc:
        status, error = "error", describe_error(exc)
    finally:
        if tracker is not None:
            tracker.__exit__(None, None, None)
        gc.callbacks.remove(timer)
    result = {"status": status, "records": records, "error": error, "gc": timer.result()}
    return result, EXIT_OK if status == "ok" else EXIT_FAILED


def main(runner: Runner = call_once, teardown: bool = True) -> None:
    """Read the spec named on the command line, run, write the result file, exit.

    Without `teardown` the process ends as multiprocessing's workers do: the job's threads
    are waited for and its atexit handlers run, the standard streams are flushed, and the
    objects still live are not freed one by one (0.35 s for a heap of 2.4 million objects,
    which nothing measures when the run is `snapshot` or `leaks`)."""
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    result, code = call(spec, runner)
    tmp = spec["result"] + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.replace(tmp, spec["result"])
    if teardown:
        sys.exit(code)
    end_without_teardown(code)


def end_without_teardown(code: int) -> NoReturn:
    """Exit with `code` after what the interpreter's own exit does first (waiting for the
    threads that are not daemons, the atexit handlers, flushing the standard streams), but
    without freeing what is still live."""
    import atexit
    import threading

    main_thread = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main_thread and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass  # closed or gone: as at an ordinary exit, nothing more to write
    os._exit(code)


if __name__ == "__main__":
    main()
