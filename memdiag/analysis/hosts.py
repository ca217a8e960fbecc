"""The machines a sweep's runs ran on (`env.host` of each run) and the caveats they bring.

On a cluster the repeats of one configuration may land on different workers: their peaks
are still exact, but wall times and records/s compare only between like machines. And a
budget above a worker's memory cannot be tested on that worker.
"""

from __future__ import annotations

import json
from typing import Any

from memdiag.analysis.aggregate import config_params
from memdiag.model import HostSummary, Run
from memdiag.units import format_size

# Total memory reported by like machines differs by what their kernels reserve.
MEMORY_TOLERANCE = 0.1


def summarise_hosts(runs: list[Run]) -> list[HostSummary]:
    """Return one summary per machine that ran runs, in the order first seen."""
    found: dict[str, tuple[dict[str, Any], int]] = {}
    for run in runs:
        host = run.env.get("host")
        if isinstance(host, dict) and host.get("name"):
            key = json.dumps(host, sort_keys=True, default=str)
            found[key] = (host, found.get(key, (host, 0))[1] + 1)
    return [
        HostSummary(
            name=str(host["name"]),
            cpus=host.get("cpus"),
            memory_bytes=host.get("memory_bytes"),
            python=host.get("python"),
            memdiag=host.get("memdiag"),
            runs=count,
            cpu_model=host.get("cpu_model"),
            memory_limit_bytes=host.get("memory_limit_bytes"),
        )
        for host, count in found.values()
    ]


def usable_memory(host: HostSummary) -> int | None:
    """Return the memory a job can use on `host` (bytes): its cgroup limit when lower."""
    sizes = [s for s in (host.memory_bytes, host.memory_limit_bytes) if s]
    return min(sizes, default=None)


def alike(a: HostSummary, b: HostSummary) -> bool:
    """Return whether runs on `a` and `b` have comparable speed: same CPU model and count,
    same Python, memory within MEMORY_TOLERANCE."""
    if (a.cpu_model, a.cpus, a.python) != (b.cpu_model, b.cpus, b.python):
        return False
    if not a.memory_bytes or not b.memory_bytes:
        return a.memory_bytes == b.memory_bytes
    return abs(a.memory_bytes - b.memory_bytes) <= MEMORY_TOLERANCE * max(
        a.memory_bytes, b.memory_bytes
    )


def host_warnings(
    runs: list[Run], axes: dict[str, list[Any]], budgets: list[int], hosts: list[HostSummary]
) -> list[str]:
    """Return the warnings about machines: repeats of one configuration on unlike machines,
    and budgets above a machine's usable memory."""
    by_name = {h.name: h for h in hosts}
    configs: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for run in runs:
        host = run.env.get("host")
        if isinstance(host, dict) and host.get("name") in by_name:
            params = config_params(run, axes)
            key = json.dumps(params, sort_keys=True, default=str)
            names = configs.setdefault(key, (params, []))[1]
            if host["name"] not in names:
                names.append(host["name"])
    mixed = [
        f"{_params(params)} on {', '.join(names)}"
        for params, names in configs.values()
        if any(not alike(by_name[names[0]], by_name[n]) for n in names[1:])
    ]
    out = []
    if mixed:
        out.append(
            f"The repeats of {len(mixed)} configuration(s) ran on unlike machines (CPU, "
            "CPUs, memory or Python differ), so their wall times and records/s are not "
            "comparable; peaks are: " + "; ".join(mixed)
        )
    for budget in budgets:
        small = [h for h in hosts if (usable_memory(h) or budget) < budget]
        if small:
            listed = ", ".join(f"{h.name} ({format_size(usable_memory(h))})" for h in small)
            out.append(
                f"The budget {format_size(budget)} exceeds the memory of {listed}: a job "
                "there cannot use all of it, so that budget cannot be tested there."
            )
    return out


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "(defaults)"
