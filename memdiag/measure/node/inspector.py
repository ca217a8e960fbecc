"""A running Node.js process's inspector, from memdiag: opened, used and always closed again.

`SIGUSR1` makes node open its inspector on 127.0.0.1 (port 9229 unless the process was started
with `--inspect-port`); the port it really got is found among the process's own listening
sockets (`/proc/PID/fd` inodes in `/proc/PID/net/tcp`), so a 9229 taken by another process is
never mistaken for it. memdiag speaks the Chrome DevTools Protocol over websocket-client and
closes the inspector with `require('inspector').close()` evaluated in the process (Node's
command-line API provides `require` there) on its next turn of the event loop, then checks
that the port is gone. An inspector
that was already open before memdiag came is used and left as it was found.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memdiag.errors import MemdiagError

if TYPE_CHECKING:
    import websocket

OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 60.0
# After the close's own answer, how long node's close frame is waited for (inspector.close()
# runs on the loop's next turn; a loop busy for longer, or a close that failed, is not
# waited for: nothing more is asked of the session then, so nothing more is written to it).
CLOSE_FRAME_WAIT_S = 10.0
# Closed from the event loop, never inside the session's own dispatch (node 20 may crash when a
# session closes itself from inside a message); `require` exists at evaluation time only.
CLOSE_EXPRESSION = (
    "(() => { const inspector = require('inspector');"
    " setImmediate(() => { try { inspector.close(); } catch (error) {} }); })()"
)
LISTEN = "0A"  # TCP state of a listening socket in /proc/net/tcp


@dataclass(frozen=True)
class NodeProcess:
    """A node process memdiag may attach to: its pid, executable and command line."""

    pid: int
    exe: str
    command: str


def is_node_executable(pid: int) -> bool:
    """True when the executable of `pid` is node (by /proc/PID/exe, else its argv[0])."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = _argv(pid)[0] if _argv(pid) else ""
    return is_node_name(exe.removesuffix(" (deleted)"))


def is_node_name(program: str) -> bool:
    """True when `program` (a path or a name) is node: `node`, `nodejs`, `node20`."""
    name = os.path.basename(program)
    return name in ("node", "nodejs") or (name.startswith("node") and name[4:].isdigit())


def node_process(pid: int) -> NodeProcess:
    """Return `pid` as a NodeProcess; a missing pid, another user's or not node is refused."""
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        raise MemdiagError(f"no process with pid {pid}") from None
    if owner != os.getuid():
        raise MemdiagError(f"pid {pid} belongs to another user (uid {owner}): not attaching")
    argv = _argv(pid)
    command = " ".join(argv) or f"pid {pid}"
    if not is_node_executable(pid):
        raise MemdiagError(f"pid {pid} is not a node process ({command[:80]})")
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = argv[0] if argv else "node"
    return NodeProcess(pid, exe, command)


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def listening_ports(pid: int) -> set[int]:
    """Return the TCP ports `pid` itself listens on (its own sockets, not its namespace's)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def debugger_url(port: int, timeout: float = 2.0) -> str | None:
    """Return the websocket URL of the node inspector on 127.0.0.1:`port`, or None."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
            targets = json.loads(r.read())
    except (OSError, ValueError):
        return None
    for target in targets if isinstance(targets, list) else []:
        if isinstance(target, dict) and target.get("type") == "node":
            url = target.get("webSocketDebuggerUrl")
            return str(url) if url else None
    return None


def _find_inspector(pid: int) -> tuple[int, str] | None:
    for port in sorted(listening_ports(pid)):
        url = debugger_url(port)
        if url:
            return port, url
    return None


class InspectorSession:
    """One Chrome DevTools Protocol session: calls by id, events handed to a callback."""

    def __init__(self, ws: websocket.WebSocket, pid: int, port: int) -> None:
        self.ws, self.pid, self.port = ws, pid, port
        self._next_id = 0

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """Send `method`; return its result, passing events to `on_event` until it comes.
        Past `deadline` (time.monotonic) a MemdiagError (exit 1) is raised."""
        import websocket

        self._next_id += 1
        ident = self._next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        while True:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MemdiagError(f"pid {self.pid}: {method} timed out", exit_code=1)
                self.ws.settimeout(remaining)
            try:
                raw = self.ws.recv()
                if not raw:  # the peer closed the connection
                    raise websocket.WebSocketConnectionClosedException("closed")
                message = json.loads(raw)
            except websocket.WebSocketTimeoutException:
                raise MemdiagError(f"pid {self.pid}: {method} timed out", exit_code=1) from None
            except (websocket.WebSocketException, OSError, ValueError) as exc:
                raise MemdiagError(
                    f"pid {self.pid}: the inspector connection closed during {method} ({exc})",
                    exit_code=1,
                ) from None
            if message.get("id") == ident:
                if "error" in message:
                    error = message["error"].get("message", message["error"])
                    raise MemdiagError(f"pid {self.pid}: {method}: {error}", exit_code=1)
                return dict(message.get("result", {}))
            if on_event is not None and "method" in message:
                on_event(message)

    def wait_for_close(self, deadline: float) -> None:
        """Read until the inspector closes the connection (its close frame, not answered, or
        the connection's end) or `deadline` passes; what comes before is dropped."""
        import websocket

        while (remaining := deadline - time.monotonic()) > 0:
            self.ws.settimeout(remaining)
            try:
                frame = self.ws.recv_frame()  # type: ignore[no-untyped-call]
            except (websocket.WebSocketException, OSError):
                return
            if frame is None or frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                return


def require_websocket() -> None:
    """Raise a one-line MemdiagError naming the extra when websocket-client is missing."""
    import importlib.util

    if importlib.util.find_spec("websocket") is None:
        raise MemdiagError(
            "a running node process is reached with websocket-client: pip install 'memdiag[node]'"
        )


@contextmanager
def attach(pid: int, timeout: float = OPEN_TIMEOUT_S) -> Iterator[InspectorSession]:
    """Yield a session with the inspector of node process `pid`, opened by SIGUSR1 when it is
    not open yet, and closed again on the way out (success, error, Ctrl-C or timeout)."""
    node_process(pid)
    require_websocket()
    import websocket

    found = _find_inspector(pid)
    opened = found is None
    if opened:
        before = listening_ports(pid)
        os.kill(pid, signal.SIGUSR1)
    session = None
    try:
        if found is None:
            found = _wait_for_inspector(pid, before, timeout)
        port, url = found
        ws = websocket.create_connection(
            url, timeout=timeout, suppress_origin=True, skip_utf8_validation=True
        )
        session = InspectorSession(ws, pid, port)
        yield session
    finally:
        if opened:
            _shielded(lambda: close_inspector(pid, session, found))
        elif session is not None:
            _shielded(lambda: _leave(session))


def _wait_for_inspector(pid: int, before: set[int], timeout: float) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            raise MemdiagError(f"pid {pid} exited while its inspector was opening", exit_code=1)
        for port in sorted(listening_ports(pid) - before):
            url = debugger_url(port)
            if url:
                return port, url
        time.sleep(0.05)
    raise MemdiagError(
        f"pid {pid}: no inspector port opened within {timeout:g} s of SIGUSR1 (is port 9229 "
        "taken by another process, or SIGUSR1 handled by the program?)",
        exit_code=1,
    )


def _shielded(action: Callable[[], None]) -> None:
    """Run `action` with Ctrl-C held off, so the inspector is closed even on a second Ctrl-C."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        action()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        action()
    finally:
        signal.signal(signal.SIGINT, previous)


def close_inspector(
    pid: int, session: InspectorSession | None, found: tuple[int, str] | None
) -> None:
    """Close the inspector of `pid` through `session` (or a new connection, or the port that
    opened late) and wait until its port is gone; a MemdiagError (exit 1) when it stays open.

    Node 20 crashes (SIGSEGV in TcpHolder::WriteRaw) when a message for a session is written
    after that session's socket has seen its end, so the connection is dropped once the
    inspector itself has closed it (every answer and event for the session is written by
    then), or CLOSE_FRAME_WAIT_S after the close's own answer, when nothing is pending.
    """
    import websocket

    if found is None:  # SIGUSR1 sent but the port was not seen yet: look once more
        time.sleep(0.2)
        found = _find_inspector(pid)
        if found is None:
            return
    port, url = found
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    try:
        if session is None:
            ws = websocket.create_connection(
                url, timeout=CLOSE_TIMEOUT_S, suppress_origin=True, skip_utf8_validation=True
            )
            session = InspectorSession(ws, pid, port)
        # Chunks of a snapshot cut short by Ctrl-C or a timeout, and the answers to calls that
        # timed out, come first: dropped. The close itself runs on the next turn of the loop.
        session.call(
            "Runtime.evaluate",
            {"expression": CLOSE_EXPRESSION, "includeCommandLineAPI": True},
            deadline=deadline,
        )
        session.wait_for_close(min(deadline, time.monotonic() + CLOSE_FRAME_WAIT_S))
    except (MemdiagError, websocket.WebSocketException, OSError):
        pass
    finally:
        if session is not None:
            # Dropped, not closed by a WebSocket handshake: node 20's inspector thread may
            # write its answering close frame after inspector.close() has freed its handler
            # (a crash of the process, SIGSEGV in WsHandler::OnCloseFrameWritten).
            session.ws.shutdown()  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + 5.0
    while port in listening_ports(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if port in listening_ports(pid):
        raise MemdiagError(
            f"pid {pid}: the inspector is still open on 127.0.0.1:{port}", exit_code=1
        )


def _leave(session: InspectorSession) -> None:
    """Leave an inspector that was open before memdiag came: once every call of the session is
    answered (a last one, answered after all of them), so nothing is written to it after."""
    import websocket

    try:
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        session.call("Runtime.evaluate", {"expression": "0"}, deadline=deadline)
    except MemdiagError:
        pass
    try:
        session.ws.close()
    except (websocket.WebSocketException, OSError):
        pass


def take_heap_snapshot(session: InspectorSession, path: str | Path, timeout: float = 600.0) -> int:
    """Write a V8 heap snapshot of the session's process to `path`, streamed chunk by chunk
    (never whole in memory; atomically: a `.part` file renamed at the end); return its bytes."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with open(part, "w", encoding="utf-8") as out:

            def chunk(event: dict[str, Any]) -> None:
                if event["method"] == "HeapProfiler.addHeapSnapshotChunk":
                    out.write(event["params"]["chunk"])

            deadline = time.monotonic() + timeout
            session.call("HeapProfiler.enable", deadline=deadline)
            session.call(
                "HeapProfiler.takeHeapSnapshot",
                {"reportProgress": False, "captureNumericValue": False},
                on_event=chunk,
                deadline=deadline,
            )
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return target.stat().st_size
