"""The health endpoint and the `memdiag serve` sidecar, through a real HTTP client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from prometheus_client import parser

from memdiag import health
from tests.conftest import MB

TOKEN = "s3cret-token"


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def base_url() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, health.app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def parse_metrics(text: str) -> dict[str, float]:
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_memory_status_shape(base_url: str) -> None:
    status, body = call(f"{base_url}/api/health/memory")
    data = json.loads(body)
    assert status == 200
    assert data["rss_bytes"] > 10 * MB and data["limit_bytes"] >= data["rss_bytes"]
    assert 0 < data["utilization"] < 100 and data["uptime_s"] > 0
    assert len(data["gc"]["counts"]) == 3 and len(data["gc"]["collections"]) == 3
    assert set(data["trend"]) >= {"verdict", "growth_mb_per_hour", "r2"}
    assert "heap_bytes" in data


def test_clear_cache_needs_the_configured_token(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = {"a": bytearray(MB)}
    health.register_cache_clearer("test-cache", cache.clear)
    health.register_cache_clearer("broken", lambda: 1 / 0)
    url = f"{base_url}/api/health/memory/clear-cache"
    try:
        monkeypatch.delenv("MEMDIAG_HEALTH_TOKEN", raising=False)
        assert call(url, "POST", {"Authorization": f"Bearer {TOKEN}"})[0] == 404
        monkeypatch.setenv("MEMDIAG_HEALTH_TOKEN", TOKEN)
        assert call(url, "POST")[0] == 403
        assert call(url, "POST", {"Authorization": "Bearer wrong"})[0] == 403
        assert cache
        status, body = call(url, "POST", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and not cache
        outcome = json.loads(body)
        assert outcome["cleared"]["test-cache"] == {"ok": True}
        assert "ZeroDivisionError" in outcome["cleared"]["broken"]["error"]
        assert call(url, "POST", {"X-Memdiag-Token": TOKEN})[0] == 200
        assert call(url, "GET")[0] == 405
    finally:
        health._clearers.clear()


def test_metrics_parse_as_prometheus_text(base_url: str) -> None:
    status, body = call(f"{base_url}/metrics")
    metrics = parse_metrics(body)
    assert status == 200
    assert metrics["memdiag_process_rss_bytes{}"] > 10 * MB
    assert 0 < metrics["memdiag_memory_utilization_ratio{}"] < 1
    assert 'memdiag_gc_collections_total{"generation": "0"}' in metrics
    assert call(f"{base_url}/nothing")[0] == 404


def start_sidecar(*args: str) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "memdiag", "serve", "--port", "0", "--interval", "0.2", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "http://127.0.0.1:" in line, proc.stderr.read() if proc.stderr else line
    return proc, line.split(" on ")[-1].strip().removesuffix("/api/health/memory")


def test_sidecar_serves_a_command_and_stops_on_sigterm() -> None:
    hold = "import time; x = bytearray(80 * 1024 * 1024); x[::4096] = b'1' * 20480; time.sleep(60)"
    proc, url = start_sidecar("--", sys.executable, "-c", hold)
    try:
        data: dict[str, Any] = {}
        for _ in range(50):
            data = json.loads(call(f"{url}/api/health/memory")[1])
            if data["rss_bytes"] > 80 * MB:
                break
            threading.Event().wait(0.1)
        assert data["rss_bytes"] > 80 * MB and data["running"]
        assert data["limit_source"] in ("cgroup", "total memory")
        metrics = parse_metrics(call(f"{url}/metrics")[1])
        assert metrics["memdiag_process_rss_bytes{}"] > 80 * MB
        clear = call(f"{url}/api/health/memory/clear-cache", "POST")
        assert clear[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM


def test_sidecar_ends_with_the_followed_process() -> None:
    proc, _ = start_sidecar(
        "--", sys.executable, "-c", "import sys, time; time.sleep(0.5); sys.exit(4)"
    )
    proc.communicate(timeout=30)
    assert proc.returncode == 4


def test_sidecar_bad_pid_is_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "memdiag", "serve", "--pid", "99999999"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "no such process" in proc.stderr


def test_trend_window_is_the_last_two_hours_at_frequent_readings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # as health.py says: one point per 5 s at most, 2 hours of them when readings are frequent
    clock = [1_000_000.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(health, "_history", health.deque(maxlen=health.HISTORY_POINTS))
    for _ in range(3 * 3600):  # a reading every second for 3 hours
        clock[0] += 1.0
        health.observe(100 * MB)
    trend = health.trend_of(health._history)
    assert 2 * 3600 - 10 <= trend["window_s"] <= 2 * 3600
    assert trend["points"] == health.HISTORY_POINTS
