"""Runs a line of Python inside a running CPython before 3.14, through gdb in batch mode.

gdb attaches (the process stops), waits for a safe point, calls `PyGILState_Ensure`,
`PyRun_SimpleString` of the line and `PyGILState_Release`, and detaches: the way `memray
attach` and pyrasite get in. The safe point is the entry of `malloc`, `calloc`, `realloc` or
`free` in any thread, as `memray attach` waits for it: there the thread holds no allocator
lock, so the calls, which allocate, cannot deadlock on one. A process that allocates nothing
for SAFE_WAIT_S is idle, every thread blocked in a system call: gdb is interrupted (the
SIGINT is not passed on to the process) and calls right there. During the calls gdb lets
the other threads run (scheduler locking is off), so a thread holding the GIL hands it over
as usual. The line must return at once (it starts a thread,
`memdiag.measure.python.loader`): the process is stopped from the attach to the detach,
about a second, measured in docs/leaks.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from memdiag.errors import MemdiagError
from memdiag.measure.attach.target import is_running

INSTALL = "install gdb (apt-get install gdb, dnf install gdb, apk add gdb)"
# gdb may read the interpreter's symbols for seconds on a loaded machine; past this it is
# stopped (and the process detached by the kernel with it) rather than left hanging.
TIMEOUT_S = 60.0
_RESULT = re.compile(r"^\$(\d+) = (-?\d+)", re.MULTILINE)


def gdb_path() -> str:
    """Return gdb's path; raise MemdiagError saying how to install it when there is none."""
    found = shutil.which("gdb")
    if found is None:
        raise MemdiagError(f"attaching to a running process needs gdb: {INSTALL}")
    return found


# How long a process may allocate nothing before it is taken to be idle (see above).
SAFE_WAIT_S = 2.0
ALLOCATORS = ("malloc", "calloc", "realloc", "free")
HIT = "memdiag: at an allocator's entry"


def gdb_script(line: str) -> str:
    """Return the gdb script that runs the Python `line` at a safe point and detaches: at the
    first allocator entry, or after the wait when gdb is interrupted."""
    quoted = line.replace("\\", "\\\\").replace('"', '\\"')
    calls = [
        "disable breakpoints",
        "call (int) PyGILState_Ensure()",
        f'call (int) PyRun_SimpleString("{quoted}")',
        "call (void) PyGILState_Release($1)",
        "detach",
        "quit",
    ]
    script = ["set pagination off", "set unwindonsignal on", "handle SIGINT stop print nopass"]
    script += [f"break {name}" for name in ALLOCATORS]
    script += [f"commands 1-{len(ALLOCATORS)}", "  silent", f"  echo {HIT}\\n"]
    script += [f"  {call}" for call in calls] + ["end", "continue", *calls]
    return "\n".join(script) + "\n"


def _attach(gdb: str, pid: int) -> list[str]:
    """Return gdb in batch mode attached to `pid`, reading nothing of the user's."""
    argv = [gdb, "-batch", "-nx", "-iex", "set auto-load off", "-iex"]
    return [*argv, "set debuginfod enabled off", "-iex", "set confirm off", "-p", str(pid)]


def _batch(gdb: str, pid: int, *commands: str) -> list[str]:
    """Return gdb attached to `pid`, running `commands`, then detaching."""
    argv = _attach(gdb, pid)
    for command in (*commands, "detach", "quit"):
        argv += ["-ex", command]
    return argv


class GdbCannotCall(MemdiagError):
    """gdb is there but cannot call a function in a process on this machine."""


# What gdb prints when this kernel refuses the registers it writes around a function call
# (gdb 13 on a CPU whose XSAVE area it does not know): the call never runs, and the process
# resumes with its interrupted system call's restart state lost.
_BROKEN_CALLS = ("Couldn't write extended state", "Couldn't write registers")
_CALLS_CHECKED: list[str | None] = []


def function_calls_broken(gdb: str, timeout_s: float = TIMEOUT_S) -> str | None:
    """Return why gdb cannot call a function in a process on this machine, None when it can.

    Tried once per memdiag process, on a throwaway Python process of memdiag's own asleep in a
    system call, as a service usually is: a refusal there would break the real target.
    """
    if _CALLS_CHECKED:
        return _CALLS_CHECKED[0]
    import sys

    probe = subprocess.Popen(
        [sys.executable, "-S", "-c", "import time; print(flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert probe.stdout is not None
        probe.stdout.readline()  # asleep in the interpreter, past its start
        command = _batch(gdb, probe.pid, "call (int) getpid()")
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            reason: str | None = f"gdb took over {timeout_s:g} s to call getpid() in a test process"
        else:
            output = done.stdout + done.stderr
            broken = next((m for m in _BROKEN_CALLS if m in output), None)
            called = f"= {probe.pid}" in output
            reason = None if called and broken is None else (broken or output.strip()[-160:])
    finally:
        probe.kill()
        probe.wait()
    _CALLS_CHECKED.append(reason)
    return reason


def run_in_process(pid: int, line: str, timeout_s: float = TIMEOUT_S) -> tuple[float, str]:
    """Run the Python `line` in `pid` through gdb; return the seconds gdb took and where it
    went in (`allocator` or `idle`).

    Raise MemdiagError when gdb could not attach, the process exited, or the line failed.
    Ctrl-C meanwhile is held until gdb has detached: the process is never left stopped.
    """
    import tempfile

    gdb = gdb_path()
    with tempfile.NamedTemporaryFile("w", suffix=".gdb", prefix="memdiag-") as script:
        script.write(gdb_script(line))
        script.flush()
        started = time.perf_counter()
        with _sigint_deferred() as interrupted:
            proc = subprocess.Popen(
                [*_attach(gdb, pid), "-x", script.name],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,  # the terminal's Ctrl-C must not reach gdb mid-call
            )
            out = _Output(proc)
            entered = _wait_for_safe_point(proc, out, timeout_s)
            try:
                proc.wait(timeout=max(timeout_s - (time.perf_counter() - started), 1.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                _resume(pid)
                raise MemdiagError(
                    f"gdb did not finish attaching to {pid} within {timeout_s:g} s: stopped it"
                ) from None
            out.ended.wait(5)
    took = time.perf_counter() - started
    if interrupted:
        signal.raise_signal(signal.SIGINT)  # now to the handler memdiag had before
    _check(pid, subprocess.CompletedProcess(proc.args, proc.returncode, "".join(out.lines), ""))
    return took, entered


class _Output:
    """gdb's output, read as it comes: `armed` once every allocator has its breakpoint, `hit`
    once one was reached, `ended` at the end of the output."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.armed, self.hit, self.ended = threading.Event(), threading.Event(), threading.Event()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        last = f"Breakpoint {len(ALLOCATORS)} at"
        for text in proc.stdout:
            self.lines.append(text)
            if text.startswith(last):
                self.armed.set()
            elif text.startswith(HIT):
                self.hit.set()
        self.armed.set()
        self.ended.set()


def _wait_for_safe_point(proc: subprocess.Popen[str], out: _Output, timeout_s: float) -> str:
    """Wait until an allocator's entry is reached or gdb ends; SAFE_WAIT_S after the
    breakpoints are in with neither, interrupt gdb so that it calls where the idle process
    stands. Return `allocator`, `idle`, or `none` (gdb ended before it went in)."""
    out.armed.wait(timeout_s)  # gdb reads the interpreter's symbols first: seconds when loaded
    deadline = time.perf_counter() + SAFE_WAIT_S
    while not out.hit.is_set() and not out.ended.is_set() and time.perf_counter() < deadline:
        out.hit.wait(0.05)
    if out.hit.is_set():
        return "allocator"
    if out.ended.is_set():
        return "none"  # its output says why (`_check`)
    os.kill(proc.pid, signal.SIGINT)
    return "idle"


def _check(pid: int, proc: subprocess.CompletedProcess[str]) -> None:
    output = proc.stdout + proc.stderr
    if not is_running(pid):
        raise MemdiagError(f"process {pid} exited during the attach")
    if "ptrace: Operation not permitted" in output:
        raise MemdiagError(
            f"the kernel refused gdb access to {pid} (ptrace: Operation not permitted): "
            "run memdiag.agent.install() in the service instead, or as root"
        )
    results = dict(_RESULT.findall(output))
    if "No symbol" in output or len(results) < 2:
        tail = " ".join(output.strip().splitlines()[-2:])[:200]
        raise MemdiagError(f"gdb could not run Python in {pid}: {tail}")
    if results.get("2") != "0":
        raise MemdiagError(f"the agent's loader failed to start in {pid} (see its stderr)")


def _resume(pid: int) -> None:
    """Make sure a process gdb left behind runs (a SIGSTOP from the attach may be pending)."""
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


@contextmanager
def _sigint_deferred() -> Iterator[list[bool]]:
    """Hold Ctrl-C until the block ends; the yielded list is non-empty when one came."""
    import threading

    interrupted: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)
