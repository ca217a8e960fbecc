"""Runs in memdiag (the parent): the environment that puts the preload into a Node job.

`NODE_OPTIONS=--require <preload.js>` reaches every Node process of the command's tree: the
`node` memdiag starts, one an `npm run` or `pnpm` wrapper starts, forked and spawned
children (they inherit the environment) and worker threads (Node loads `--require` modules
in each). Programs that are not Node ignore `NODE_OPTIONS`. A heap limit goes in the same
way, as `--max-old-space-size`; a flag on the job's own command line comes after
`NODE_OPTIONS` and wins.
"""

from __future__ import annotations

from pathlib import Path

from memdiag.errors import MemdiagError
from memdiag.units import format_size

PRELOAD = Path(__file__).with_name("preload.js")
MB = 1024**2
# Names the preload reads; MEMDIAG_NODE_PARENT is how it tells a child from the main process.
DIR_VAR, INTERVAL_VAR, PARENT_VAR = (
    "MEMDIAG_NODE_DIR",
    "MEMDIAG_NODE_INTERVAL_MS",
    "MEMDIAG_NODE_PARENT",
)


def heap_limit_mb(limit_bytes: int) -> int:
    """Return `limit_bytes` as `--max-old-space-size` takes it (whole MB); else MemdiagError."""
    if limit_bytes < MB or limit_bytes % MB:
        raise MemdiagError(
            f"--heap-limit: {format_size(limit_bytes)} is not a whole number of MB "
            "(--max-old-space-size counts MB)"
        )
    return limit_bytes // MB


def node_env(
    env: dict[str, str], folder: Path, interval_s: float, heap_limit_bytes: int | None
) -> dict[str, str]:
    """Return `env` with the preload (writing into `folder`, sampling every `interval_s`)
    and, when given, the heap limit added to NODE_OPTIONS; the job's own options are kept."""
    options = [env.get("NODE_OPTIONS", "").strip(), f"--require {_quoted(str(PRELOAD))}"]
    if heap_limit_bytes is not None:
        options.append(f"--max-old-space-size={heap_limit_mb(heap_limit_bytes)}")
    out = {k: v for k, v in env.items() if k != PARENT_VAR}
    out["NODE_OPTIONS"] = " ".join(o for o in options if o)
    out[DIR_VAR] = str(folder)
    out[INTERVAL_VAR] = str(max(1, round(interval_s * 1000)))
    return out


def _quoted(path: str) -> str:
    # NODE_OPTIONS splits on spaces; inside double quotes a backslash escapes the next char.
    escaped = path.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
