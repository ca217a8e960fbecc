"""What machine a run was measured on: recorded with every result, shown in every report."""

from __future__ import annotations

import os
import platform
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


def collect_env() -> dict[str, Any]:
    """Return Python, platform, CPUs, total memory, cgroup limit and memdiag version."""
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
    }
