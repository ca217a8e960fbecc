"""The cooperative agent: lets `memdiag snapshot --pid` and `leaks --pid` in without a debugger.

    import memdiag.agent
    memdiag.agent.install()

starts a thread that listens on a Unix socket only this user can open
(`memdiag.measure.attach.cooperative`). Each request runs memdiag's in-process agent
(`memdiag.measure.python.loader`, the same as gdb injects) in a thread of its own, which
ends when it has answered. `uninstall()` stops listening and removes the socket.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import threading
from pathlib import Path
from typing import Any

__all__ = ["install", "uninstall"]

_SERVER: list[tuple[socket.socket, threading.Thread, str]] = []


def install() -> str:
    """Start listening (once per process); return the socket's path."""
    from memdiag.measure.attach.cooperative import socket_dir, socket_path

    if _SERVER:
        return _SERVER[0][2]
    folder = socket_dir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RuntimeError(f"memdiag.agent: {folder} must be a directory of this user's, mode 0700")
    path = socket_path(os.getpid())
    _remove_stale(folder)
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(4)
    thread = threading.Thread(
        target=_serve, args=(server,), name="memdiag-agent-socket", daemon=True
    )
    _SERVER.append((server, thread, path))
    thread.start()
    return path


def _remove_stale(folder: str) -> None:
    """Remove the sockets of agents whose process is gone (killed before it could)."""
    for name in os.listdir(folder):
        if not (name.startswith("agent-") and name.endswith(".sock")):
            continue
        try:
            os.kill(int(name[len("agent-") : -len(".sock")]), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
        except (ValueError, OSError):
            continue


def uninstall() -> None:
    """Stop listening and remove the socket."""
    if not _SERVER:
        return
    server, thread, path = _SERVER.pop()
    try:
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(path)  # wakes accept()
    except OSError:
        pass
    server.close()
    thread.join(timeout=5)
    Path(path).unlink(missing_ok=True)


def _serve(server: socket.socket) -> None:
    while _SERVER and _SERVER[0][0] is server:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            if not _SERVER:
                return
            try:
                conn.sendall(json.dumps(_answer(conn)).encode() + b"\n")
            except OSError:
                continue


def _answer(conn: socket.socket) -> dict[str, Any]:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    if uid not in (os.geteuid(), 0):
        return {"ok": False, "error": f"uid {uid} may not ask"}
    line = conn.makefile("rb").readline()
    try:
        request = json.loads(line)
        _start(str(request["dir"]))
    except (ValueError, KeyError, OSError) as error:
        return {"ok": False, "error": str(error)}
    return {"ok": True}


def _start(folder: str) -> None:
    from memdiag.measure.attach.cooperative import loader_path

    root = str(Path(__file__).resolve().parent.parent)
    source = Path(loader_path()).read_text()
    names = {"__name__": "memdiag_loader", "ROOT": root, "REQUEST": f"{folder}/agent-request.json"}
    exec(compile(source, loader_path(), "exec"), names)
