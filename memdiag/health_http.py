"""The WSGI side of the health endpoint: routes, the token, JSON and Prometheus text.

Shared by `memdiag.health.app` (this process) and `memdiag serve` (another process): both
give a status function returning the dict of `memdiag.health.memory_status()`.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Response = tuple[str, str, bytes]

TOKEN_ENV = "MEMDIAG_HEALTH_TOKEN"
JSON_TYPE = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (metric name, status key, help, type): plain gauges read from the status dict.
GAUGES = (
    ("memdiag_process_rss_bytes", "rss_bytes", "Resident set size (of the tree).", "gauge"),
    ("memdiag_process_uss_bytes", "uss_bytes", "Unique set size of the tree.", "gauge"),
    ("memdiag_python_heap_bytes", "heap_bytes", "Bytes traced by tracemalloc.", "gauge"),
    ("memdiag_memory_limit_bytes", "limit_bytes", "The limit utilization refers to.", "gauge"),
    ("memdiag_process_uptime_seconds", "uptime_s", "Seconds since the process started.", "gauge"),
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


def metrics_text(status: dict[str, Any]) -> str:
    """Return the status as Prometheus text exposition (format 0.0.4)."""
    lines = []
    for name, key, text, kind in GAUGES:
        if status.get(key) is not None:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {status[key]}"]
    utilization = status["utilization"] / 100
    lines += [
        "# HELP memdiag_memory_utilization_ratio RSS as a share of the limit (0-1).",
        "# TYPE memdiag_memory_utilization_ratio gauge",
        f"memdiag_memory_utilization_ratio {utilization:.6f}",
    ]
    trend = status.get("trend") or {}
    if trend.get("verdict") not in (None, "unknown"):
        lines += [
            "# HELP memdiag_memory_growth_bytes_per_second Fitted RSS growth.",
            "# TYPE memdiag_memory_growth_bytes_per_second gauge",
            f"memdiag_memory_growth_bytes_per_second "
            f"{trend['growth_mb_per_hour'] * 1024 * 1024 / 3600:.3f}",
        ]
    collections = (status.get("gc") or {}).get("collections")
    if collections:
        lines += [
            "# HELP memdiag_gc_collections_total Garbage collections per generation.",
            "# TYPE memdiag_gc_collections_total counter",
        ]
        lines += [
            f'memdiag_gc_collections_total{{generation="{gen}"}} {count}'
            for gen, count in enumerate(collections)
        ]
    return "\n".join(lines) + "\n"


def make_app(
    status: Callable[[], dict[str, Any]], clear: Callable[[], dict[str, Any]] | None
) -> WsgiApp:
    """Return a WSGI app serving `status()` as JSON and metrics; `clear` runs the hooks
    (None: the clear-cache route answers 404, as a sidecar cannot reach another process's
    caches)."""

    def route(method: str, path: str, environ: dict[str, Any]) -> Response:
        if path == "/api/health/memory" and method in ("GET", "HEAD"):
            return _json("200 OK", status())
        if path == "/metrics" and method in ("GET", "HEAD"):
            return "200 OK", METRICS_TYPE, metrics_text(status()).encode()
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
