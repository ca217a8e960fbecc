"""Whether memdiag may get into a running process, read from /proc before anything is tried.

A refusal is one line (`MemdiagError`, exit 2) that says the way out: the cooperative agent
(`memdiag.agent.install()` in the service, no debugger needed), or root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from memdiag.errors import MemdiagError

_VERSION = re.compile(r"(?:libpython|/python)(3\.\d+)")
_WAY_OUT = "run memdiag.agent.install() in the service instead (no debugger needed), or as root"


@dataclass(frozen=True)
class TargetProcess:
    """A running process memdiag may attach to: its pid, command and CPython version."""

    pid: int
    command: str
    python: str | None  # "3.11", from the interpreter's file names; None when not CPython


def inspect_process(pid: int) -> TargetProcess:
    """Return what /proc says of `pid`; raise MemdiagError when there is no such process
    or it is another user's (and memdiag not root)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        owner = os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        raise MemdiagError(f"no process with pid {pid}") from None
    if owner != os.geteuid() and os.geteuid() != 0:
        raise MemdiagError(f"process {pid} is another user's (uid {owner}): {_WAY_OUT}")
    return TargetProcess(pid, command, python_version(pid))


def python_version(pid: int) -> str | None:
    """Return the CPython version mapped into `pid` ("3.12"), None when none is."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        with open(f"/proc/{pid}/maps") as handle:
            maps = handle.read()
    except OSError:
        return None
    for text in (maps, exe):
        found = _VERSION.search(text)
        if found:
            return found.group(1)
    return None


def require_python(target: TargetProcess) -> str:
    """Return the target's CPython version; raise MemdiagError when it runs none."""
    if target.python is None:
        raise MemdiagError(
            f"process {target.pid} ({target.command[:60]}) is not a CPython process: "
            "snapshot --pid without Python shows its /proc view only"
        )
    return target.python


def check_ptrace(pid: int) -> None:
    """Raise MemdiagError when the kernel will not let this user trace `pid`."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as handle:
            scope = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return  # no Yama: ordinary permissions, checked in `inspect_process`
    if scope >= 3:
        raise MemdiagError(
            f"ptrace is disabled on this machine (kernel.yama.ptrace_scope = 3): {_WAY_OUT}"
        )
    if os.geteuid() == 0:
        return
    if scope == 2:
        raise MemdiagError(
            f"only root may attach a debugger here (kernel.yama.ptrace_scope = 2): {_WAY_OUT}"
        )
    if scope == 1:  # gdb may trace only its own children: the service is not one
        raise MemdiagError(
            f"kernel.yama.ptrace_scope = 1 lets a debugger attach only to its own children "
            f"(process {pid} is not one): {_WAY_OUT}, or set the sysctl to 0"
        )


def is_running(pid: int) -> bool:
    """Return whether `pid` still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
