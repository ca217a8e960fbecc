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
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    total = psutil.virtual_memory().total
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            root, name = Path("/sys/fs/cgroup"), "memory.max"
        elif "memory" in controllers.split(","):
            root, name = Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"
        else:
            continue
        # Inside a container the cgroup path may not exist under the mount: check its
        # ancestors and the mount's own root too, and keep the tightest limit.
        here = Path(path.lstrip("/"))
        for folder in (here, *here.parents):
            raw = _read(root / folder / name)
            if raw.isdigit() and int(raw) < total:
                limits.append(int(raw))
    return min(limits, default=None)


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
