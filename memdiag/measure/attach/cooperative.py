"""The cooperative agent's socket, memdiag's side: where it is and how a request is sent.

A service that runs `memdiag.agent.install()` listens on a Unix socket in a directory only
its user can open (`/tmp/memdiag-UID/`, mode 0700; the socket 0600, and the agent checks
the peer's credentials): no debugger, no ptrace, so it works in containers without
`CAP_SYS_PTRACE`. One JSON request a line, the same as the injected agent's.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from memdiag.errors import MemdiagError


def loader_path() -> str:
    """Return the path of the loader file run inside the process (never imported)."""
    return str(Path(__file__).resolve().parent.parent / "python" / "loader.py")


def agent_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment (`base`, else this one) in which a command's Python processes
    start with the cooperative agent installed (`autoagent/sitecustomize.py` first on their
    PYTHONPATH; processes run with -I, -E or -S skip it)."""
    env = dict(os.environ if base is None else base)
    here = str(Path(__file__).resolve().parent / "autoagent")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env["MEMDIAG_AGENT_ROOT"] = str(Path(__file__).resolve().parents[3])
    return env


def socket_dir(uid: int | None = None) -> str:
    """Return the directory of the agents' sockets of the user `uid` (this one's)."""
    return os.path.join(tempfile.gettempdir(), f"memdiag-{os.geteuid() if uid is None else uid}")


def socket_path(pid: int) -> str:
    """Return the socket the cooperative agent of process `pid` listens on."""
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        uid = os.geteuid()
    return os.path.join(socket_dir(uid), f"agent-{pid}.sock")


def ask_agent(pid: int, request: dict[str, Any], timeout_s: float = 10.0) -> None:
    """Send `request` to the agent of `pid`; return once it has started to answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout_s)
            conn.connect(socket_path(pid))
            conn.sendall(json.dumps(request).encode() + b"\n")
            reply = conn.makefile("rb").readline()
    except OSError as error:
        raise MemdiagError(f"the agent of process {pid} did not answer: {error}") from None
    answer = json.loads(reply or b"{}")
    if not answer.get("ok"):
        raise MemdiagError(f"the agent of process {pid} refused: {answer.get('error', 'no reply')}")
