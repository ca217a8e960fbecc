"""What machine a run was measured on: recorded with every result, shown in every report."""

from __future__ import annotations

import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import psutil

from memdiag import __version__


def cgroup_limit_bytes(pid: int) -> int | None:
    """Return the tightest memory limit of `pid`'s cgroup and its ancestors, in bytes, or
    None when there is none (cgroup v2 or v1; a limit at or above total memory is none)."""
    total = psutil.virtual_memory().total
    limits = []
    for folder, version in _memory_cgroups(pid):
        raw = _read(folder / ("memory.max" if version == 2 else "memory.limit_in_bytes"))
        if raw.isdigit() and int(raw) < total:
            limits.append(int(raw))
    return min(limits, default=None)


def oom_counters(pid: int) -> dict[str, int]:
    """Return the out-of-memory counters that can be read, by file: the kernel's OOM kills
    (/proc/vmstat) and those of `pid`'s memory cgroup and its ancestors (v2 memory.events
    oom_kill; v1 memory.oom_control oom_kill and memory.failcnt). Read only, never written.
    """
    counters = {}
    files = [(Path("/proc/vmstat"), "oom_kill")]
    for folder, version in _memory_cgroups(pid):
        if version == 2:
            files.append((folder / "memory.events", "oom_kill"))
        else:
            files += [(folder / "memory.oom_control", "oom_kill"), (folder / "memory.failcnt", "")]
    for path, name in files:
        for line in _read(path).splitlines():
            key, _, value = line.rpartition(" ")
            if key == name and value.isdigit():
                counters[f"{path}{' ' + name if name else ''}"] = int(value)
    return counters


def _memory_cgroups(pid: int) -> list[tuple[Path, int]]:
    """Return the folders of `pid`'s memory cgroup and its ancestors, with the cgroup version."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            root, version = Path("/sys/fs/cgroup"), 2
        elif "memory" in controllers.split(","):
            root, version = Path("/sys/fs/cgroup/memory"), 1
        else:
            continue
        # Inside a container the cgroup path may not exist under the mount: check its
        # ancestors and the mount's own root too.
        here = Path(path.lstrip("/"))
        folders += [(root / folder, version) for folder in (here, *here.parents)]
    return folders


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _cpu_model() -> str | None:
    # Only the first processor's model: the machines compared are sets of like cores.
    for line in _read(Path("/proc/cpuinfo")).splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or None


def collect_host() -> dict[str, Any]:
    """Return the machine a run ran on: name, CPUs and their model, total memory (bytes),
    the cgroup limit (bytes, or None), Python and memdiag versions."""
    return {
        "name": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": psutil.virtual_memory().total,
        "memory_limit_bytes": cgroup_limit_bytes(os.getpid()),
        "python": platform.python_version(),
        "memdiag": __version__,
    }


def collect_env() -> dict[str, Any]:
    """Return Python, platform, CPUs, total memory, cgroup limit, memdiag version and the
    host (`collect_host`): the machine that ran the job, a cluster worker's on a cluster."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        # platform.platform() scans the interpreter binary for its libc: slow, and not needed.
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "total_memory_bytes": psutil.virtual_memory().total,
        "cgroup_limit_bytes": cgroup_limit_bytes(os.getpid()),
        "memdiag": __version__,
        "host": collect_host(),
    }
