"""Runs in memdiag (the parent): one isolated run of the target in a fresh child, measured.

memdiag → launcher (a bare interpreter) → job. The job's peak is the kernel's ru_maxrss of
the finished job, read by the launcher through wait4, never a sampled maximum: a 50 ms spike
counts. A sampler thread here records the tree's memory for the timeline and enforces
`--limit` from the moment the launcher starts.

The job is started before memdiag loads psutil and its model classes: those imports (about
40 ms) then overlap the job instead of adding to its wall time.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memdiag.errors import MemdiagError
from memdiag.measure.process import launcher as child_launcher
from memdiag.measure.python import bootstrap as child_bootstrap
from memdiag.targets import Target, fill_command

if TYPE_CHECKING:
    from memdiag.measure.process.heap import HeapCapture
    from memdiag.model import Run, RunError, Sample, Status
    from memdiag.model.v8 import V8Stats

SAMPLED_TREE_MARGIN = 1.02
# memdiag's own --timeout fallback waits this long past the launcher's deadline.
LATE_S = 10.0
# A SIGKILL memdiag did not send, with the tree's last sampled memory at this share of its
# cgroup's limit: the kernel's OOM killer (or the container's) is the likely sender.
CGROUP_OOM_FRACTION = 0.9
# Every process of a run has this in its environment, set to the run's own probe file.
PROBE_ENV = "MEMDIAG_PROBE"


@dataclass(frozen=True)
class RunOptions:
    """How to measure: sampling interval (s), heap tracking, memray capture, timeout, limit."""

    interval: float = 0.1
    heap: bool = False
    memray_path: str | None = None
    native: bool = False
    timeout: float | None = None
    limit_bytes: int | None = None
    env: dict[str, str] | None = None
    # Names dropped from the job's environment (what a dask nanny injects into its worker).
    unset_env: tuple[str, ...] = ()
    # Other measuring commands (snapshot, leaks) run their own child entry point through the
    # same launcher: a module run with `-m` that takes the spec path, reads `extra` from it,
    # and writes its result file as memdiag.measure.python.bootstrap does.
    child_module: str = child_bootstrap.__name__
    extra: dict[str, Any] | None = None


class MeasurementInterrupted(Exception):
    """Ctrl-C during a run: the job was stopped; `run` holds what was measured."""

    def __init__(self, run: Run) -> None:
        super().__init__("interrupted")
        self.run = run


@dataclass
class _Outcome:
    launch: dict[str, Any]
    child: dict[str, Any] | None
    reason: Status | None
    samples: list[tuple[float, int]]
    sampled_max: int
    started: float
    launcher_code: int = 0
    expects_child: bool = True  # a Python target writes child.json; a command does not
    last_bytes: int = 0  # the tree's memory at the last check that found a process
    oom_before: dict[str, int] | None = None
    oom_after: dict[str, int] | None = None
    pss_unreadable: bool = False


def measure_run(target: Target, params: dict[str, Any], options: RunOptions | None = None) -> Run:
    """Run `target` once with `params` in a fresh child process and return what it took.

    Bad input (a missing module or function, a parameter the target does not take, a command
    that cannot start) raises MemdiagError; anything the job does is recorded in the Run.
    """
    options = options or RunOptions()
    if not target.is_python and (options.heap or options.memray_path):
        raise MemdiagError("--heap and --memray need a Python target, not an external command")
    heap_limit = _heap_limit(target, params)
    workdir = Path(tempfile.mkdtemp(prefix="memdiag-run-"))
    try:
        argv, heap_path = _job_argv(target, params, options, workdir)
        # Any command may run node (directly, through npm, from a shell script): each gets
        # the preload; a tree where no Node process wrote a record has no `v8` block.
        node_dir = None if target.is_python else workdir / "node"
        if node_dir is not None:
            node_dir.mkdir()
        outcome = _execute(argv, workdir, options, node_dir, heap_limit)
        outcome.expects_child = target.is_python
        from memdiag.measure.process.heap import HeapCapture, read_capture

        heap = read_capture(heap_path) if heap_path else HeapCapture(None)
        run = _build_run(target, params, options, outcome, heap, workdir / "probe.jsonl", node_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if outcome.reason == "killed":
        raise MeasurementInterrupted(run)
    return run


def _heap_limit(target: Target, params: dict[str, Any]) -> int | None:
    """Return the `heap_limit` parameter in bytes (a byte count or a size such as 128MB)."""
    value = params.get("heap_limit")
    if value is None:
        return None
    if target.is_python:
        raise MemdiagError("--heap-limit applies to Node jobs (a command after --)")
    from memdiag.measure.node.inject import heap_limit_mb
    from memdiag.units import parse_size

    limit = value if isinstance(value, int) and not isinstance(value, bool) else None
    limit = limit if limit is not None else parse_size(str(value))
    heap_limit_mb(limit)  # a size that is not whole MB fails here, before the run
    return limit


def _job_argv(
    target: Target, params: dict[str, Any], options: RunOptions, workdir: Path
) -> tuple[list[str], str | None]:
    if not target.is_python:
        return fill_command(target.argv, params), None
    heap_mode, heap_path = None, None
    if options.memray_path:
        heap_mode, heap_path = "full", options.memray_path
        Path(heap_path).unlink(missing_ok=True)  # memray refuses to overwrite
    elif options.heap:
        heap_mode, heap_path = "aggregated", str(workdir / "heap.memray")
    spec = {
        "kind": "module" if target.kind == "engine" else target.kind,
        "location": target.location,
        "function": target.function,
        "params": params,
        "result": str(workdir / "child.json"),
        "heap": heap_mode,
        "heap_path": heap_path,
        "native": options.native,
        "extra": options.extra or {},
    }
    (workdir / "spec.json").write_text(json.dumps(spec))
    return [sys.executable, "-m", options.child_module, str(workdir / "spec.json")], heap_path


def _execute(
    argv: list[str],
    workdir: Path,
    options: RunOptions,
    node_dir: Path | None = None,
    heap_limit: int | None = None,
) -> _Outcome:
    probe = str(workdir / "probe.jsonl")  # unique to this run: it marks the run's processes
    env = {**os.environ, **(options.env or {}), PROBE_ENV: probe}
    for name in options.unset_env:
        env.pop(name, None)
    if node_dir is not None:
        from memdiag.measure.node.inject import node_env

        env = node_env(env, node_dir, options.interval, heap_limit)
    result_path = workdir / "launch.json"
    timeout = "-" if options.timeout is None else str(options.timeout)
    command = [
        sys.executable,
        "-I",
        "-S",
        child_launcher.__file__,
        str(result_path),
    ]
    # Standard library only: the limit is watched from the start, not after psutil loads.
    from memdiag.measure.process.sampler import TreeSampler

    reason: list[Status] = []

    def stop(why: Status) -> None:
        if not reason:
            reason.append(why)
            proc.send_signal(signal.SIGUSR1)

    started = time.time()
    lifeline_r, lifeline_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [*command, str(lifeline_r), timeout, *argv], pass_fds=(lifeline_r,), env=env
        )
    except BaseException:
        os.close(lifeline_w)
        raise
    finally:
        os.close(lifeline_r)
    sampler: TreeSampler | None = None
    oom_before = None
    try:
        sampler = TreeSampler(
            proc.pid, options.interval, options.limit_bytes, lambda _: stop("oom")
        )
        sampler.start()
        # Warmed while the job runs, not after it: they are needed for the result.
        import memdiag.measure.process.env
        import memdiag.measure.process.heap
        import memdiag.model

        oom_before = memdiag.measure.process.env.oom_counters(os.getpid())
        try:
            # The launcher stops the job on time; this is for a launcher that does not.
            proc.wait(timeout=None if options.timeout is None else options.timeout + LATE_S)
        except subprocess.TimeoutExpired:
            stop("timeout")
            proc.wait()
    except KeyboardInterrupt:
        stop("killed")
        proc.wait()
    finally:
        if proc.poll() is None:  # something above raised: the launcher stops its job
            proc.send_signal(signal.SIGUSR1)
            proc.wait()
        if sampler is not None:
            sampler.stop()
        os.close(lifeline_w)
        if proc.returncode != 0:
            _kill_orphans(probe)
    assert sampler is not None  # it was made, or the error above went on up
    launch = json.loads(result_path.read_text()) if result_path.exists() else {}
    if launch.get("timed_out") and not reason:
        reason.append("timeout")
    if "spawn_error" in launch:
        raise MemdiagError(launch["spawn_error"])
    child_path = workdir / "child.json"
    child = json.loads(child_path.read_text()) if child_path.exists() else None
    if child and child.get("status") == "bad-target":
        raise MemdiagError(child["message"])
    return _Outcome(
        launch,
        child,
        reason[0] if reason else None,
        sampler.samples,
        sampler.max_rss,
        started,
        launcher_code=proc.returncode,
        last_bytes=sampler.last_bytes,
        oom_before=oom_before,
        oom_after=memdiag.measure.process.env.oom_counters(os.getpid()),
        pss_unreadable=sampler.pss_unreadable,
    )


def _kill_orphans(probe: str) -> None:
    """Kill what is left of a run whose launcher did not end well (SIGKILL leaves its job
    running, reparented): every process whose environment carries this run's marker."""
    from memdiag.measure.process.procview import marked_pids

    killed = []
    for pid in marked_pids(PROBE_ENV, probe):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        killed.append(pid)
    deadline = time.monotonic() + ORPHAN_WAIT_S  # SIGKILL is not instant: gone on return
    while any(_running(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.01)


# How long memdiag waits for the orphans it killed to be gone.
ORPHAN_WAIT_S = 2.0


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (dead, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _status(outcome: _Outcome, peak: int, limit: int | None) -> tuple[Status, RunError | None]:
    """Decide how the run ended, in order: our own stop, a passed limit, a missing result,
    a signal, the job's word, its exit code. Nothing recorded is never `ok`."""
    from memdiag.model import RunError

    launch, child = outcome.launch, outcome.child
    if outcome.reason == "timeout":
        return "timeout", RunError("Timeout", "stopped after the --timeout")
    if outcome.reason == "killed":
        return "killed", RunError("KeyboardInterrupt", "interrupted by the user")
    if outcome.reason == "oom" or (limit is not None and peak > limit):
        return "oom", RunError("LimitExceeded", f"went past the memory limit of {limit} bytes")
    if not launch or outcome.launcher_code != 0:
        if outcome.launcher_code == -signal.SIGKILL:
            status, killed = kill_verdict(
                signal.SIGKILL, outcome.last_bytes, _cgroup_limit(), outcome.oom_before or {},
                outcome.oom_after or {},
            )  # fmt: skip
            if status == "oom":  # the OOM killer took the launcher (a cgroup killed as one)
                return status, RunError(killed.type, f"{killed.message} (its launcher too)")
        return "error", RunError("MissingResult", _launcher_failure(outcome))
    if launch.get("signal"):
        return kill_verdict(
            launch["signal"],
            outcome.last_bytes,
            _cgroup_limit(),
            outcome.oom_before or {},
            outcome.oom_after or {},
        )
    code = launch.get("exit_code")
    if child is not None:
        if child["status"] == "ok" and code:
            return "error", RunError("ExitCode", f"returned, then exited with code {code}")
        error = RunError(**child["error"]) if child.get("error") else None
        return child["status"], error
    if code:
        return "error", RunError("ExitCode", f"exited with code {code}")
    if outcome.expects_child:
        message = "the job exited with code 0 but wrote no result (child.json): it did not return"
        return "error", RunError("MissingResult", message)
    return "ok", None


def _cgroup_limit() -> int | None:
    from memdiag.measure.process.env import cgroup_limit_bytes

    return cgroup_limit_bytes(os.getpid())


def _launcher_failure(outcome: _Outcome) -> str:
    code = outcome.launcher_code
    how = f"ended by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
    if outcome.launch:
        return f"the launcher {how} after writing its result"
    missing = "its result (launch.json)"
    if outcome.expects_child and outcome.child is None:
        missing += " and the job's (child.json)"
    return f"the launcher {how} without writing {missing}"


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"


def kill_verdict(
    signal_number: int,
    last_bytes: int,
    cgroup_limit: int | None,
    oom_before: dict[str, int],
    oom_after: dict[str, int],
) -> tuple[Status, RunError]:
    """Return `oom` for a job killed by a signal memdiag did not send when the evidence says
    it ran out of memory, else `killed`, with the signal and the evidence in the message.

    Evidence, for SIGKILL only (the OOM killer sends nothing else): an OOM counter that grew
    during the run (`oom_counters`: the kernel's, the cgroup's memory.events or failcnt), or
    the tree's last sampled memory (bytes) at CGROUP_OOM_FRACTION of the cgroup's limit.
    """
    from memdiag.model import RunError
    from memdiag.units import format_size

    name = _signal_name(signal_number)
    if signal_number == signal.SIGKILL:
        grown = [
            f"{key} {oom_before[key]} -> {n}"
            for key, n in oom_after.items()
            if key in oom_before and n > oom_before[key]
        ]
        if grown:
            return "oom", RunError(
                "OutOfMemory", f"killed by {name}; out of memory: {', '.join(grown)}"
            )
        if cgroup_limit and last_bytes >= CGROUP_OOM_FRACTION * cgroup_limit:
            share = f"{format_size(last_bytes)} of the cgroup's {format_size(cgroup_limit)} limit"
            return "oom", RunError("OutOfMemory", f"killed by {name} at {share}")
    return "killed", RunError("Killed", f"killed by {name}")


def _build_run(
    target: Target,
    params: dict[str, Any],
    options: RunOptions,
    outcome: _Outcome,
    heap: HeapCapture,
    probe_path: Path,
    node_dir: Path | None = None,
) -> Run:
    from memdiag.measure.node.records import NodeRecords, read_records
    from memdiag.measure.process.env import collect_env
    from memdiag.model import GcStats, Run

    launch, child = outcome.launch, outcome.child or {}
    kernel_peak = int(launch.get("maxrss_kb", 0)) * 1024
    peak = max(kernel_peak, outcome.sampled_max)
    wall = float(launch.get("wall_s", time.time() - outcome.started))
    node = read_records(node_dir, wall) if node_dir else NodeRecords(None)
    status, error = _status(outcome, peak, options.limit_bytes)
    if outcome.reason is None and status != "ok" and node.stats is not None:
        status, error = heap_limit_verdict(node.stats, status, error)
    events = _read_probe(probe_path)
    records = child.get("records")
    if records is None:
        records = next((e["records"] for e in reversed(events) if "records" in e), None)
    phases = [(e["t"], e["phase"]) for e in events if "phase" in e]
    return Run(
        target=target.text,
        params=dict(params),
        status=status,
        peak_rss_bytes=peak,
        wall_s=round(wall, 4),
        cpu_s=round(float(launch.get("cpu_s", 0.0)), 4),
        peak_heap_bytes=heap.peak_bytes if node.stats is None else node.stats.peak_heap_used_bytes,
        records=records,
        records_per_s=round(records / wall, 2) if records and wall > 0 else None,
        gc=GcStats(**child["gc"]) if child.get("gc") else None,
        error=error,
        exit_code=launch.get("exit_code"),
        limit_bytes=options.limit_bytes,
        peak_rss_source=_peak_source(kernel_peak, outcome.sampled_max),
        peak_rss_sampled_bytes=outcome.sampled_max,
        heap_source="v8" if node.stats else "memray" if heap.peak_bytes is not None else None,
        started_at=datetime.fromtimestamp(outcome.started, UTC).isoformat(),
        memray_path=options.memray_path,
        timeline=_timeline(outcome.started, outcome.samples, heap.timeline, phases, node.series),
        phases=[{"t_s": round(t - outcome.started, 4), "phase": p} for t, p in phases],
        env=collect_env(),
        at_peak=heap.at_peak,
        v8=node.stats,
        oom_kind=OOM_KINDS.get(error.type) if status == "oom" and error else None,
        pss_unreadable=outcome.pss_unreadable,
        # memdiag's failure, not the job's: its launcher died and no kernel OOM explains it
        infrastructure=error.message
        if status == "error" and error and (not launch or outcome.launcher_code != 0)
        else None,
    )


# How an `oom` run ran out, by the type of its error.
OOM_KINDS = {"HeapLimit": "heap-limit", "LimitExceeded": "limit", "OutOfMemory": "kernel"}


def heap_limit_verdict(
    v8: V8Stats, status: Status, error: RunError | None
) -> tuple[Status, RunError | None]:
    """Return `oom` (HeapLimit) for a failed run in which a Node process died at V8's heap
    limit, with the heap at death in the message; else the verdict as it was. A job that
    survived a worker's or a child's death at its limit (and exited 0) stays `ok`."""
    from memdiag.model import RunError
    from memdiag.units import format_size

    dead = next((p for p in v8.processes if p.end == "heap-limit"), None)
    if dead is None or dead.at_death is None:
        return status, error
    death = dead.at_death
    message = (
        f"{dead.kind} process {dead.pid} reached V8's heap limit of "
        f"{format_size(death.heap_limit_bytes or dead.heap_limit_bytes)}: heap used "
        f"{format_size(death.heap_used_bytes)} at death ({death.reason})"
    )
    return "oom", RunError("HeapLimit", message)


def _peak_source(kernel_peak: int, sampled_max: int) -> str:
    # The kernel's figure is per process, and can lag by a page batch for a job killed
    # mid-allocation; only a clearly larger sampled sum means several processes at once.
    return "sampled-tree" if sampled_max > kernel_peak * SAMPLED_TREE_MARGIN else "kernel"


def _read_probe(path: Path) -> list[dict[str, Any]]:
    events = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a foreign program's stray line must not cost the run
            if isinstance(event, dict) and isinstance(event.get("t"), int | float):
                events.append(event)
    return sorted(events, key=lambda e: e["t"])


def _timeline(
    started: float,
    samples: list[tuple[float, int]],
    heap: list[tuple[float, int]],
    phases: list[tuple[float, str | None]],
    v8: list[tuple[float, int, int, int]] | None = None,
) -> list[Sample]:
    """Merge RSS samples, the nearest earlier heap figure and the current phase by time;
    for a Node job the heap is V8's (used, and total and external beside it)."""
    from memdiag.model import Sample

    v8 = v8 or []
    if v8:
        heap = [(t, used) for t, used, _, _ in v8]
    heap_times = [t for t, _ in heap]
    phase_times = [t for t, _ in phases]
    timeline = []
    for t, rss in samples:
        h = bisect.bisect_right(heap_times, t) - 1
        p = bisect.bisect_right(phase_times, t) - 1
        timeline.append(
            Sample(
                round(t - started, 4),
                rss,
                heap[h][1] if h >= 0 else None,
                phases[p][1] if p >= 0 else None,
                v8[h][2] if v8 and h >= 0 else None,
                v8[h][3] if v8 and h >= 0 else None,
            )
        )
    return timeline
