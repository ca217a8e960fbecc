"""One visit of memdiag's agent to a running Python process: in, its answer, out again.

The way in, in order: the cooperative agent's socket when the service runs one
(`memdiag.agent.install()`, no debugger), `sys.remote_exec` when memdiag and the service
both run Python 3.14+, else gdb. Every way runs the same loader
(`memdiag.measure.python.loader`), whose thread answers the request into a private
directory and then removes itself; the visit ends when that thread has exited.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import memdiag
from memdiag.errors import MemdiagError
from memdiag.measure.attach import gdb
from memdiag.measure.attach.cooperative import ask_agent, loader_path, socket_path
from memdiag.measure.attach.target import (
    check_ptrace,
    inspect_process,
    is_running,
    require_python,
)

# Beyond the traced window: how long the agent may take to answer (a collection, a fork,
# the count of a large heap in the copy).
ANSWER_S = 120.0


class Visit:
    """A request carried out inside `pid`; its files are read from `folder`."""

    def __init__(self, pid: int, request: dict[str, Any], inject: bool = False) -> None:
        self.inject = inject  # gdb may go in: the user asked for it (--inject)
        self.target = inspect_process(pid)
        self.pid = pid
        self.folder = Path(tempfile.mkdtemp(prefix="memdiag-attach-"))
        owner = os.stat(f"/proc/{pid}").st_uid
        if owner != os.geteuid():  # root visiting another user's service: it writes here
            os.chown(self.folder, owner, -1)
        self.request = {**request, "dir": str(self.folder)}
        self.attached: dict[str, Any] = {"python": self.target.python, "trace_s": None}
        self.started = False  # the agent's thread may be running: `finish` waits for it

    def start(self) -> None:
        """Get in and start the agent's thread; raise MemdiagError when that is refused."""
        (self.folder / "request.json").unlink(missing_ok=True)
        _write(self.folder / "agent-request.json", self.request)
        started = time.perf_counter()
        if os.path.exists(socket_path(self.pid)):
            self.started = True
            ask_agent(self.pid, self.request)
            self.attached.update(via="agent socket", pause_s=0.0)
            return
        version = require_python(self.target)
        line = self._line()
        if _remote_exec_possible(version):
            path = self._start_script(line)
            self.started = True
            sys.remote_exec(self.pid, str(path))  # type: ignore[attr-defined]
            self.attached.update(via="sys.remote_exec", pause_s=0.0)
            return
        if _remote_exec_version(version):
            refused = self._remote_exec_through_target(line)
            if refused is None:
                return
            if not self.inject:
                raise MemdiagError(f"pid {self.pid}: sys.remote_exec refused ({refused})")
        if not self.inject:
            raise MemdiagError(
                f"pid {self.pid} runs no memdiag agent: add --inject to go in through gdb (the "
                "process stops about a second; docs/leaks.md), or have it call "
                "memdiag.agent.install()"
            )
        check_ptrace(self.pid)
        broken = gdb.function_calls_broken(gdb.gdb_path())
        if broken is not None:
            raise gdb.GdbCannotCall(
                f"gdb cannot call functions in processes on this machine ({broken}): pid "
                f"{self.pid} was left alone; have it call memdiag.agent.install() instead"
            )
        self.started = True
        took, entered = gdb.run_in_process(self.pid, line)
        self.attached.update(via="gdb", pause_s=round(took, 3), entered=entered)
        self.attached["attach_s"] = round(time.perf_counter() - started, 3)

    def _remote_exec_through_target(self, line: str) -> str | None:
        """Have the target's own interpreter (3.14+, memdiag on another version) call
        `sys.remote_exec` on it; return why it refused, None when the line was handed over."""
        path = self._start_script(line)
        call = "import sys; sys.remote_exec(int(sys.argv[1]), sys.argv[2])"
        argv = [f"/proc/{self.pid}/exe", "-I", "-S", "-c", call, str(self.pid), str(path)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return str(error)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:200]
        self.started = True
        self.attached.update(via="sys.remote_exec, called by its own interpreter", pause_s=0.0)
        return None

    def _start_script(self, line: str) -> Path:
        """Return the file `sys.remote_exec` hands to the target: the line, readable by it."""
        path = self.folder / "start.py"
        path.write_text(line + "\n")
        os.chmod(path, 0o644)
        return path

    def _line(self) -> str:
        """Return the one line run inside the process: exec the loader in a namespace of
        its own (never the service's `__main__`)."""
        path = loader_path()
        root = str(Path(memdiag.__file__).resolve().parent.parent)
        request = str(self.folder / "agent-request.json")
        names = {"__name__": "memdiag_loader", "ROOT": root, "REQUEST": request}
        return f"exec(compile(open({path!r}).read(), {path!r}, 'exec'), {names!r})"

    def read(self, name: str, wait_s: float = ANSWER_S) -> dict[str, Any]:
        """Return the agent's file `name`, waiting for it; raise MemdiagError when the
        agent failed, the process exited, or `wait_s` passed."""
        path, deadline = self.folder / name, time.monotonic() + wait_s
        while not path.exists():
            self._check_alive_and_well()
            if time.monotonic() > deadline:
                raise MemdiagError(f"no answer from the agent in {self.pid} within {wait_s:g} s")
            time.sleep(0.05)
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def answer(self, name: str, data: dict[str, Any]) -> None:
        """Write `data` as `name` for the agent to read (memdiag's attribution request)."""
        _write(self.folder / name, data)

    def _check_alive_and_well(self) -> None:
        error = self.folder / "error.json"
        if error.exists():
            text = json.loads(error.read_text())["traceback"].strip().splitlines()[-1]
            raise MemdiagError(f"the agent failed in {self.pid}: {text}", exit_code=1)
        if not is_running(self.pid):
            raise MemdiagError(f"process {self.pid} exited during the attach")

    def finish(self, wait_s: float = 30.0) -> None:
        """Wait for the agent's thread to remove itself and exit, then drop the folder."""
        try:
            if not self.started:
                return
            done = self.read("done.json", wait_s)
            thread = done.get("thread")
            deadline = time.monotonic() + 5.0
            while thread and os.path.exists(f"/proc/{self.pid}/task/{thread}"):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        except MemdiagError:
            pass  # the process exited or the agent failed: nothing of it is left to wait for
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def can_enter_quietly(pid: int) -> bool:
    """Return whether memdiag can go into `pid` without a debugger: its agent's socket, or
    `sys.remote_exec` (3.14+), which runs at a point the interpreter chooses as safe."""
    if os.path.exists(socket_path(pid)):
        return True
    version = inspect_process(pid).python
    return version is not None and _remote_exec_version(version)


def _remote_exec_possible(version: str) -> bool:
    """sys.remote_exec (PEP 768) from memdiag itself: 3.14+, the target's minor version."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    return hasattr(sys, "remote_exec") and version == here


def _remote_exec_version(version: str) -> bool:
    """True for a CPython that has `sys.remote_exec` (3.14+): its own interpreter calls it
    when memdiag runs on another version."""
    major, _, minor = version.partition(".")
    return major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= (3, 14)


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
