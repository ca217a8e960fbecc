"""What machine a run was measured on: recorded with every result, shown in every report."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import psutil

from memdiag import __version__

# cgroup v2, then v1; a "max" or an absurdly large number means no limit.
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def cgroup_limit_bytes() -> int | None:
    """Return this process's cgroup memory limit in bytes, or None when there is none."""
    for path in _CGROUP_LIMITS:
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < psutil.virtual_memory().total:
            return int(raw)
        return None
    return None


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
        "cgroup_limit_bytes": cgroup_limit_bytes(),
        "memdiag": __version__,
    }
