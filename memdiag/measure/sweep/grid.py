"""Running a sweep: the cartesian product of the axes, each repeat in a fresh process.

Only measurement here. Runs are handed to a listener as they finish (the CLI saves
`results.json` atomically after each), so an interrupted sweep loses at most the runs in
flight, and `pending_runs` skips what a saved sweep already holds.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import psutil

from memdiag.errors import MemdiagError
from memdiag.measure.process.runner import RunOptions, measure_run
from memdiag.measure.sweep.roles import ATTEMPTS, SweepListener, describe, lost_run
from memdiag.model import TUNING_AXES, Run
from memdiag.params import params_key
from memdiag.targets import Target
from memdiag.units import ParamValue, parse_param, parse_value


def parse_axis(name: str, text: str) -> list[ParamValue]:
    """Return the values of `name=v1,v2,...`; empty items, repeats and bad counts are errors."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise MemdiagError(f"{name}: empty value in {text!r} (give a comma-separated list)")
    values = [parse_value(item) for item in items]
    if name in TUNING_AXES:
        for item, value in zip(items, values, strict=True):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise MemdiagError(f"--{name}: {item!r} is not a positive whole number")
    repeated = [item for item, n in Counter(items).items() if n > 1]
    if repeated:
        raise MemdiagError(f"{name}: {repeated[0]!r} is listed twice")
    return values


def build_axes(
    params: tuple[str, ...], batch: str | None, concurrency: str | None
) -> tuple[dict[str, list[ParamValue]], dict[str, ParamValue]]:
    """Return (axes, fixed params): a list of two or more values is an axis, one is fixed.

    `--batch` and `--concurrency` come first, then the `--param`s in the order given.
    """
    raw: list[tuple[str, str, str]] = []
    for name, value in (("batch", batch), ("concurrency", concurrency)):
        if value is not None:
            raw.append((name, value, f"--{name}"))
    for item in params:
        name, value = parse_param(item)
        raw.append((name, value, f"--param {name}"))
    axes: dict[str, list[ParamValue]] = {}
    fixed: dict[str, ParamValue] = {}
    seen: dict[str, str] = {}
    for name, value, option in raw:
        if name in seen:
            raise MemdiagError(f"{name} is given twice ({seen[name]} and {option})")
        seen[name] = option
        values = parse_axis(name, value)
        if len(values) > 1:
            axes[name] = values
        else:
            fixed[name] = values[0]
    return axes, fixed


def expand(axes: dict[str, list[ParamValue]], fixed: dict[str, ParamValue]) -> list[dict[str, Any]]:
    """Return every configuration's full params: the cartesian product, first axis slowest."""
    names = list(axes)
    return [
        {**fixed, **dict(zip(names, values, strict=True))}
        for values in itertools.product(*(axes[n] for n in names))
    ]


def pending_runs(
    configs: list[dict[str, Any]], done: list[Run], repeat: int
) -> list[dict[str, Any]]:
    """Return the params of the runs still to do, round by round (every config, then again).

    Rounds interleave the configurations, so a slow drift of the machine spreads over all
    of them instead of biasing the last ones.
    """
    counts = Counter(params_key(run.params) for run in done)
    todo: list[dict[str, Any]] = []
    for round_ in range(repeat):
        todo.extend(c for c in configs if counts[params_key(c)] <= round_)
    return todo


def default_name(target: Target) -> str:
    """Return a directory name derived from the target: `import`, `jobs-run`, `node-sync`."""
    if target.kind == "engine":
        words = [target.text]
    elif target.kind == "command":
        words = [Path(a).stem for a in target.argv if not a.startswith("-") and "{" not in a][:2]
    else:
        words = [Path(target.location.replace(".", "/")).name, target.function]
        if target.kind == "file":
            words[0] = Path(target.location).stem
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(words)).strip("-.")
    return slug or "sweep"


def run_sweep(
    target: Target,
    todo: list[dict[str, Any]],
    options: RunOptions,
    listener: SweepListener,
    jobs: int = 1,
) -> None:
    """Measure each params in `todo`, `jobs` at a time, each in a fresh process.

    A run memdiag could not measure (its launcher died with no kernel OOM behind it, or
    memdiag's own code raised) is measured once more, then recorded as `error` with
    `infrastructure` saying why: no verdict about the job. Bad input from measure_run
    (MemdiagError) and Ctrl-C stop the sweep: runs in flight are stopped and dropped (never
    half-recorded), pending ones cancelled, the exception re-raised.
    """
    queue: Iterator[dict[str, Any]] = iter(todo)
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="memdiag-sweep")
    running: dict[Future[Run], tuple[dict[str, Any], int]] = {}

    def submit(again: dict[str, Any] | None = None, attempt: int = 1) -> None:
        params = next(queue, None) if again is None else again
        if params is not None:
            if again is None:
                listener.started(params)
            running[pool.submit(measure_run, target, params, options)] = (params, attempt)

    try:
        for _ in range(jobs):
            submit()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                params, attempt = running.pop(future)
                run = _result(target, params, future)
                if run.infrastructure is not None and attempt < ATTEMPTS:
                    submit(params, attempt + 1)  # memdiag's failure, not the job's
                    continue
                listener.finished(run)
                submit()
    except BaseException:
        _stop_launchers()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _result(target: Target, params: dict[str, Any], future: Future[Run]) -> Run:
    """Return the Run measured, or the `error` Run of memdiag's own failure (its code raised:
    said in `infrastructure`). Bad input and Ctrl-C go on up."""
    try:
        return future.result()
    except (MemdiagError, KeyboardInterrupt):
        raise
    except Exception as exc:
        return lost_run(target, params, f"memdiag failed: {describe(exc)}", type(exc).__name__)


def _stop_launchers() -> None:
    """Ask every launcher of ours to stop its job: SIGTERM kills the job's process group."""
    for child in psutil.Process(os.getpid()).children():
        try:
            child.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
