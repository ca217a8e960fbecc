"""The WSGI side of the health endpoint: routes, the token, JSON, metrics, the server.

Shared by `memdiag.health.app` (this process) and `memdiag serve` (another process): both
give a status function returning the dict of `memdiag.health.memory_status()`.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Metric

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Response = tuple[str, str, bytes]

TOKEN_ENV = "MEMDIAG_HEALTH_TOKEN"
JSON_TYPE = "application/json"

# (metric name, status key, help): plain gauges read from the status dict.
GAUGES = (
    ("memdiag_process_rss_bytes", "rss_bytes", "Resident set size (of the tree)."),
    ("memdiag_process_uss_bytes", "uss_bytes", "Unique set size of the tree."),
    ("memdiag_python_heap_bytes", "heap_bytes", "Bytes traced by tracemalloc."),
    ("memdiag_memory_limit_bytes", "limit_bytes", "The limit utilization refers to."),
    ("memdiag_process_uptime_seconds", "uptime_s", "Seconds since the process started."),
)


def _json(status: str, data: Any) -> Response:
    return status, JSON_TYPE, (json.dumps(data, indent=1) + "\n").encode()


def authorized(environ: dict[str, Any]) -> Response | None:
    """Return the refusal for a clear-cache request (404, 403), or None when it may run."""
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        return _json("404 Not Found", {"error": f"clear-cache is off: {TOKEN_ENV} is not set"})
    bearer = environ.get("HTTP_AUTHORIZATION", "")
    given = bearer[7:] if bearer.startswith("Bearer ") else environ.get("HTTP_X_MEMDIAG_TOKEN", "")
    # compare_digest: the time taken must not tell how much of the token was right.
    if not hmac.compare_digest(given.encode(), token.encode()):
        return _json("403 Forbidden", {"error": "a valid token is required"})
    return None


class MemoryCollector:
    """A prometheus_client collector over a status function (the dict of memory_status()).

    Each scrape calls `status()` once; register it in any registry (`REGISTRY.register(...)`)
    to expose memdiag's figures beside a service's own metrics.
    """

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status

    def describe(self) -> Iterator[Metric]:
        """Return the families' names without reading the process (registration is cheap)."""
        return iter(self._families(None))

    def collect(self) -> Iterator[Metric]:
        """Return the families with the current figures: gauges in bytes, seconds, ratios."""
        return iter(self._families(self.status()))

    def _families(self, status: dict[str, Any] | None) -> list[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families: list[Metric] = []
        for name, key, text in GAUGES:
            family = GaugeMetricFamily(name, text)
            if status is None or status.get(key) is not None:
                if status is not None:
                    family.add_metric([], float(status[key]))
                families.append(family)
        utilization = GaugeMetricFamily(
            "memdiag_memory_utilization_ratio", "RSS as a share of the limit (0-1)."
        )
        growth = GaugeMetricFamily("memdiag_memory_growth_bytes_per_second", "Fitted RSS growth.")
        collections = CounterMetricFamily(
            "memdiag_gc_collections", "Garbage collections per generation.", labels=["generation"]
        )
        if status is None:
            return [*families, utilization, growth, collections]
        utilization.add_metric([], status["utilization"] / 100)
        families.append(utilization)
        trend = status.get("trend") or {}
        if trend.get("verdict") not in (None, "unknown"):
            growth.add_metric([], trend["growth_mb_per_hour"] * 1024 * 1024 / 3600)
            families.append(growth)
        for generation, count in enumerate((status.get("gc") or {}).get("collections") or []):
            collections.add_metric([str(generation)], count)
        if collections.samples:
            families.append(collections)
        return families


def metrics(collector: MemoryCollector, accept: str) -> tuple[str, bytes]:
    """Return the content type and body of a scrape: OpenMetrics when `accept` asks for it,
    else the Prometheus text format 0.0.4 (prometheus_client's negotiation)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    encoder, content_type = choose_encoder(accept)
    return content_type, encoder(registry)


def make_app(
    status: Callable[[], dict[str, Any]], clear: Callable[[], dict[str, Any]] | None
) -> WsgiApp:
    """Return a WSGI app serving `status()` as JSON and metrics; `clear` runs the hooks
    (None: the clear-cache route answers 404, as a sidecar cannot reach another process's
    caches)."""

    collector = MemoryCollector(status)

    def route(method: str, path: str, environ: dict[str, Any]) -> Response:
        if path == "/api/health/memory" and method in ("GET", "HEAD"):
            return _json("200 OK", status())
        if path == "/metrics" and method in ("GET", "HEAD"):
            return ("200 OK", *metrics(collector, environ.get("HTTP_ACCEPT", "")))
        if path == "/api/health/memory/clear-cache" and method == "POST":
            if clear is None:
                return _json("404 Not Found", {"error": "no cache hooks in this process"})
            return authorized(environ) or _json("200 OK", clear())
        known = ("/api/health/memory", "/metrics", "/api/health/memory/clear-cache")
        if path in known:
            return _json("405 Method Not Allowed", {"error": f"{method} not allowed"})
        return _json("404 Not Found", {"error": f"no route {path}"})

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        code, kind, body = route(method, path, environ)
        start_response(code, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [b"" if method == "HEAD" else body]

    return app


# The server's limits, as docs/monitor.md promises them. A request to these routes is a few
# hundred bytes and is answered in about a millisecond; anything far past that is refused.
THREADS = 4
CONNECTION_LIMIT = 100
# A connection that sends nothing for this long is closed (a stalled or half-sent request).
IDLE_TIMEOUT_S = 5
# A connection with no request being answered is closed at this age, however slowly it
# keeps sending: a client trickling a byte a second cannot keep a connection for ever.
MAX_CONNECTION_S = 30
MAX_HEADER_BYTES = 8 * 1024
MAX_BODY_BYTES = 64 * 1024


class HealthServer:
    """`app` on waitress with the limits above, served by a thread; stopped by `stop()`.

    waitress reads every connection in one event loop and hands only complete requests to
    its worker threads, so a client that stalls mid-request holds a connection (until
    IDLE_TIMEOUT_S) and never a worker.
    """

    def __init__(
        self,
        app: WsgiApp,
        host: str,
        port: int,
        *,
        idle_timeout_s: int = IDLE_TIMEOUT_S,
        max_connection_s: float = MAX_CONNECTION_S,
        connection_limit: int = CONNECTION_LIMIT,
    ) -> None:
        from waitress.adjustments import Adjustments
        from waitress.server import TcpWSGIServer
        from waitress.task import ThreadedTaskDispatcher

        stopping = self._stopping = threading.Event()

        class ProbeServer(TcpWSGIServer):  # type: ignore[misc]
            def run(self) -> None:
                # One poll at a time until stop() asks: the closing is stop()'s, once this
                # thread and the workers have ended (see stop()).
                while self._map and not stopping.is_set():
                    self.asyncore.loop(
                        timeout=self.adj.asyncore_loop_timeout,
                        map=self._map,
                        use_poll=self.adj.asyncore_use_poll,
                        count=1,
                    )

            def maintenance(self, now: float) -> None:
                super().maintenance(now)
                cutoff = now - max_connection_s
                for channel in self.active_channels.values():
                    if not channel.requests and channel.creation_time < cutoff:
                        channel.will_close = True

        adj = Adjustments(
            host=host,
            port=port,
            threads=THREADS,
            connection_limit=connection_limit,
            channel_timeout=idle_timeout_s,
            cleanup_interval=1,
            asyncore_loop_timeout=1,
            max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=MAX_BODY_BYTES,
            ident="memdiag",
        )
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(THREADS)
        self._map: dict[int, Any] = {}
        self._server = ProbeServer(
            app, map=self._map, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0]
        )
        self._thread = threading.Thread(
            target=self._server.run, name="memdiag-serve-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        """Return the (host, port) listened on (the port chosen when 0 was asked)."""
        return str(self._server.effective_host), int(self._server.effective_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the event loop and the worker threads, then close every connection and the
        socket.

        Nothing is closed while another thread may still use it: a thunk closing the trigger
        from inside the loop (waitress's way) races with a worker's own pull of the same
        trigger, and the second pull then writes to a closed (or reused) descriptor.
        """
        from waitress import wasyncore

        if self._thread.is_alive():
            self._stopping.set()
            try:
                self._server.trigger.pull_trigger()  # wakes the loop at once
            except OSError:
                pass  # closed by the loop on an error of its own: it ends within a second
            self._thread.join()
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)
