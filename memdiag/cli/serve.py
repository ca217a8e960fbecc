"""memdiag serve: a sidecar serving a process's memory over HTTP.

\b
Serves the routes of `memdiag.health.app` for another process (and its children), a command
started after `--`, or the machine: GET /api/health/memory (JSON) and GET /metrics
(Prometheus text, or OpenMetrics when asked). POST /api/health/memory/clear-cache answers
404: a sidecar cannot reach another process's caches (mount memdiag.health.app in the
service for that). Listens on loopback unless --host says otherwise; --port 0 picks a free
port. The address is printed on stdout. Stalled or slow clients are cut off (5 s idle, 30 s
a connection, 100 connections at once). Ends on Ctrl-C, SIGTERM, or when the followed
process exits (with its exit code).

\b
--agent -- CMD: every Python process of the command starts with memdiag's cooperative agent
(a sitecustomize put first on its PYTHONPATH; the one it shadows still runs), so
`memdiag snapshot --pid` and `memdiag leaks --pid` of any of them get in over a Unix socket
only this user can open, with no debugger and no ptrace (containers without CAP_SYS_PTRACE).
Processes run with -I, -E or -S do not read PYTHONPATH and get none.

\b
Examples:
  memdiag serve --pid 4242
  memdiag serve --port 9105 -- node sync.js
  memdiag serve --agent --port 9105 -- python sync_service.py
  memdiag serve --host 0.0.0.0 --port 9105 --limit 2GB --pid 4242
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import click

from memdiag.cli.common import TargetCommand, external_command, positive, size_option
from memdiag.errors import MemdiagError

POLL_S = 0.2


@click.command("serve", cls=TargetCommand, help=__doc__)
@click.option("--pid", type=int, default=None, help="Serve this running process and its tree.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=9105, show_default=True, help="Port (0: any free).")
@click.option("--interval", type=float, default=10.0, show_default=True, help="Trend sampling.")
@click.option("--limit", default=None, metavar="SIZE", help="The limit utilization refers to.")
@click.option(
    "--agent",
    is_flag=True,
    help="Start the command's Python processes with memdiag's agent: snapshot --pid and "
    "leaks --pid get in with no debugger.",
)
@click.pass_context
def command(
    ctx: click.Context,
    pid: int | None,
    host: str,
    port: int,
    interval: float,
    limit: str | None,
    agent: bool,
) -> int:
    from memdiag.health.sidecar import Sidecar
    from memdiag.measure.monitor.loop import exit_status, start_command, stop_process
    from memdiag.measure.monitor.sample import MachineWatcher, TreeWatcher, Watcher

    argv = external_command(ctx)
    if pid is not None and argv:
        raise MemdiagError("give either --pid or a command after --, not both")
    if agent and not argv:
        raise MemdiagError(
            "--agent starts a command with the agent: give it after -- (a running service "
            "can call memdiag.agent.install() itself)"
        )
    positive("--interval", interval)
    limit_bytes = size_option(limit)
    from memdiag.measure.attach.cooperative import agent_env

    child = start_command(argv, agent_env() if agent else None) if argv else None
    try:
        followed = child.pid if child else pid
        watcher: Watcher = (
            TreeWatcher(followed, limit_bytes) if followed else MachineWatcher(limit_bytes)
        )
        server = _server(host, port, Sidecar(watcher, interval))
    except BaseException:
        if child is not None:
            stop_process(child)
        raise
    code = _serve(server, watcher, child)
    if child is not None:
        stop_process(child)
        code = code if child.returncode is None else exit_status(child.returncode)
    return code


def _server(host: str, port: int, sidecar: Any) -> Any:
    import logging

    from memdiag.health.http import HealthServer, make_app

    # waitress warns of every queued request: under a burst of scrapes that floods stderr.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        server = HealthServer(make_app(sidecar.status, None), host, port)
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise MemdiagError(f"cannot listen on {host}:{port}: {detail}") from None
    server.sidecar = sidecar  # type: ignore[attr-defined]
    return server


def _serve(server: Any, watcher: Any, child: Any) -> int:
    """Serve until a signal or the end of the followed process; return the exit code."""
    stopped = threading.Event()
    code = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal code
        code = 128 + signum
        stopped.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server.sidecar.start()
    server.start()
    host, port = server.address
    click.echo(f"serving {watcher.label} on http://{host}:{port}/api/health/memory", nl=True)
    try:
        while not stopped.wait(POLL_S):
            if (child is not None and child.poll() is not None) or not watcher.alive():
                break
    finally:
        server.stop()
        server.sidecar.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code
