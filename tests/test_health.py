"""The health endpoint and the `memdiag serve` sidecar, through a real HTTP client."""

from __future__ import annotations

import functools
import http.client
import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import psutil
import pytest
from prometheus_client import CollectorRegistry, parser
from prometheus_client.openmetrics import parser as openmetrics_parser

from memdiag import health
from memdiag.health.http import MAX_BODY_BYTES, MAX_HEADER_BYTES, HealthServer
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


# -- under stalled, concurrent and vanishing clients -------------------------------------------


def stall(url: str, count: int, sent: bytes = b"GET /api/hea") -> list[socket.socket]:
    """Open `count` connections that each send half a request line and then nothing."""
    host, port = url.removeprefix("http://").split(":")
    stalled = [socket.create_connection((host, int(port)), timeout=10) for _ in range(count)]
    for sock in stalled:
        sock.sendall(sent)
    return stalled


def timed_requests(
    url: str, total: int, clients: int, method: str = "GET", headers: dict[str, str] | None = None
) -> list[tuple[int, float]]:
    """Send `total` requests from `clients` threads, a new connection each (as a probe does);
    return each one's (status, seconds); a request that got no answer is (0, seconds)."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    path = "/" + url.removeprefix("http://").split("/", 1)[1]
    results: list[tuple[int, float]] = []

    def one() -> tuple[int, float]:
        start = time.perf_counter()
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            response.read()
            return response.status, time.perf_counter() - start
        except OSError:
            return 0, time.perf_counter() - start
        finally:
            connection.close()

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: one(), range(total)))
    return results


def p99(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100)[98]


@pytest.fixture
def sidecar_url() -> Iterator[str]:
    proc, url = start_sidecar("--", sys.executable, "-c", "import time; time.sleep(120)")
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM


def test_stalled_connections_do_not_delay_1000_concurrent_requests(sidecar_url: str) -> None:
    stalled = stall(sidecar_url, 10)
    try:
        timed_requests(f"{sidecar_url}/api/health/memory", 50, 20)  # warm: imports, threads
        results = timed_requests(f"{sidecar_url}/api/health/memory", 1000, 20)
        metrics = timed_requests(f"{sidecar_url}/metrics", 100, 20)
    finally:
        for sock in stalled:
            sock.close()
    assert [status for status, _ in results + metrics] == [200] * 1100
    assert p99([seconds for _, seconds in results]) < 0.1


def test_stalled_and_trickling_connections_are_cut_off() -> None:
    server = HealthServer(health.app, "127.0.0.1", 0, idle_timeout_s=1, max_connection_s=2.5)
    server.start()
    try:
        url = "http://{}:{}".format(*server.address)
        stalled, trickling = stall(url, 1)[0], stall(url, 1, b"GET /api/health/memory")[0]
        start, ends = time.monotonic(), {}
        # the stalled one is closed for silence; the trickling one, never silent, for its age
        while len(ends) < 2 and time.monotonic() - start < 10:
            time.sleep(0.3)
            for name, sock in (("stalled", stalled), ("trickling", trickling)):
                if name in ends:
                    continue
                try:
                    if name == "trickling":
                        sock.sendall(b"X")
                    if select.select([sock], [], [], 0)[0] and sock.recv(100) == b"":
                        ends[name] = time.monotonic() - start
                except OSError:
                    ends[name] = time.monotonic() - start
        assert 0.9 < ends["stalled"] < 3.5
        assert 2.4 < ends["trickling"] < 5.5
    finally:
        server.stop()


def test_connections_beyond_the_cap_wait_and_are_answered_once_stalled_ones_go() -> None:
    server = HealthServer(health.app, "127.0.0.1", 0, idle_timeout_s=2, connection_limit=8)
    server.start()
    try:
        url = "http://{}:{}".format(*server.address)
        stalled = stall(url, 8)
        start = time.monotonic()
        [(status, seconds)] = timed_requests(f"{url}/api/health/memory", 1, 1)
        assert status == 200 and 1.0 < seconds < 4.5 and time.monotonic() - start < 4.5
        for sock in stalled:
            sock.close()
    finally:
        server.stop()


def test_oversized_requests_are_refused() -> None:
    server = HealthServer(health.app, "127.0.0.1", 0)
    server.start()
    try:
        url = "http://{}:{}".format(*server.address)
        huge_header = {"X-Filler": "x" * (MAX_HEADER_BYTES + 1)}
        assert call(f"{url}/api/health/memory", headers=huge_header)[0] == 431
        body = b"x" * (MAX_BODY_BYTES + 1)
        request = urllib.request.Request(
            f"{url}/api/health/memory/clear-cache", data=body, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 413
        assert call(f"{url}/api/health/memory")[0] == 200
    finally:
        server.stop()


def test_clear_cache_refuses_without_the_token_under_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMDIAG_HEALTH_TOKEN", TOKEN)
    cleared = []
    health.register_cache_clearer("counted", lambda: cleared.append(1))
    server = HealthServer(health.app, "127.0.0.1", 0)
    server.start()
    try:
        url = "http://{}:{}".format(*server.address)
        stalled = stall(url, 10)
        clear = f"{url}/api/health/memory/clear-cache"
        with ThreadPoolExecutor(3) as pool:
            load = pool.submit(timed_requests, f"{url}/api/health/memory", 300, 10)
            anonymous = pool.submit(timed_requests, clear, 100, 5, "POST")
            wrong = pool.submit(
                timed_requests, clear, 100, 5, "POST", {"Authorization": "Bearer s3cret-tokeN"}
            )
            statuses = [s for s, _ in load.result()], [s for s, _ in anonymous.result()]
            assert statuses == ([200] * 300, [403] * 100)
            assert [s for s, _ in wrong.result()] == [403] * 100
        assert cleared == []
        assert call(clear, "POST", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert cleared == [1]
        for sock in stalled:
            sock.close()
    finally:
        server.stop()
        health._clearers.clear()


def test_clients_vanishing_mid_response_do_not_stop_the_server(sidecar_url: str) -> None:
    host, port = sidecar_url.removeprefix("http://").split(":")
    pipelined = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200
    for i in range(60):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(pipelined)
        if i % 2:
            sock.recv(200)  # read the start of the first answer, then go
        # a reset, not a polite close: the server is still writing the answers
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    results = timed_requests(f"{sidecar_url}/api/health/memory", 50, 5)
    assert [status for status, _ in results] == [200] * 50


def flood(url: str, total: int, clients: int = 10) -> int:
    """Send `total` requests (half to /metrics) on kept-alive connections, reopened every
    50 requests; return how many were not answered 200."""
    host, port = url.removeprefix("http://").split(":")

    def client(count: int) -> int:
        failed = 0
        for start in range(0, count, 50):
            connection = http.client.HTTPConnection(host, int(port), timeout=5)
            for i in range(start, min(start + 50, count)):
                connection.request("GET", "/metrics" if i % 2 else "/api/health/memory")
                response = connection.getresponse()
                response.read()
                failed += response.status != 200
            connection.close()
        return failed

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(client, [total // clients] * clients))


def test_server_rss_stays_flat_over_thousands_of_requests(sidecar_url: str) -> None:
    # The 100,000-request figure is benchmarks/bench_serve.py's; this is its quick version:
    # a leak of 1 KB a request would show here as 2 MB.
    server = psutil.Process(int(json.loads(call(f"{sidecar_url}/api/health/memory")[1])["pid"]))
    server = server.parent() or server  # the sidecar, not the process it follows
    assert flood(sidecar_url, 500) == 0
    before = server.memory_info().rss
    assert flood(sidecar_url, 2000) == 0
    assert server.memory_info().rss - before < 1.5 * MB


def test_stopping_while_workers_answer_closes_cleanly_every_time() -> None:
    # A worker finishing an answer pulls the loop's trigger; stop() must not close it under
    # that worker (it used to, now and then: "Bad file descriptor" out of stop()).
    for _ in range(60):
        server = HealthServer(health.app, "127.0.0.1", 0)
        server.start()
        url = "http://{}:{}/metrics".format(*server.address)
        with ThreadPoolExecutor(4) as pool:
            fetch = functools.partial(urllib.request.urlopen, timeout=10)
            answers = list(pool.map(fetch, [url] * 4))
        server.stop()
        assert not server._thread.is_alive() and not server._map
        for answer in answers:
            assert answer.status == 200
            answer.close()


def test_metrics_negotiate_openmetrics_and_register_in_any_registry() -> None:
    server = HealthServer(health.app, "127.0.0.1", 0)
    server.start()
    try:
        url = "http://{}:{}/metrics".format(*server.address)
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        request = urllib.request.Request(url, headers=accept)
        with urllib.request.urlopen(request, timeout=10) as response:
            kind, text = response.headers["Content-Type"], response.read().decode()
        assert kind.startswith("application/openmetrics-text; version=1.0.0")
        assert text.endswith("# EOF\n")
        families = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(text)}
        assert families["memdiag_process_rss_bytes"].samples[0].value > 10 * MB
        assert families["memdiag_gc_collections"].type == "counter"
        plain = urllib.request.urlopen(url, timeout=10)
        assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    finally:
        server.stop()
    registry = CollectorRegistry()
    registry.register(health.collector())
    assert (registry.get_sample_value("memdiag_process_rss_bytes") or 0) > 10 * MB
    assert registry.get_sample_value("memdiag_gc_collections_total", {"generation": "2"}) >= 0


class CountingWatcher:
    """A watcher of this process that counts its reads of /proc."""

    label, limit_bytes, limit_source = "self", 1 << 30, "--limit"

    def __init__(self) -> None:
        from memdiag.measure.monitor.sample import TreeWatcher

        self.inner, self.reads = TreeWatcher(os.getpid()), 0

    def alive(self) -> bool:
        return True

    def sample(self, t_s: float) -> Any:
        self.reads += 1
        return self.inner.sample(t_s)


def test_a_burst_of_requests_reads_proc_once_per_fresh_window_and_keeps_the_trend() -> None:
    from memdiag.health.sidecar import FRESH_S, Sidecar

    watcher = CountingWatcher()
    sidecar = Sidecar(watcher, interval=3600.0)
    sidecar.start()  # one reading now, the next in an hour
    try:
        deadline = time.monotonic() + 10
        while not sidecar.history and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(sidecar.history) == 1
        started, statuses = time.monotonic(), 0
        while statuses < 2000:
            assert sidecar.status()["rss_bytes"] > 0
            statuses += 1
        elapsed = time.monotonic() - started
        # One read per FRESH_S window at most (+1 for the window in progress, +1 the thread's):
        # a read per request would be 2,000.
        assert watcher.reads <= elapsed / FRESH_S + 2
        assert len(sidecar.history) == 1  # requests never push readings into the trend
    finally:
        sidecar.stop()
