"""`memdiag serve` under load: latency beside stalled clients, and RSS over 100,000 requests.

The sidecar follows a sleeping Python process. Latency: 10 connections each send half a
request line and stall while 20 client threads send 1,000 requests, a new connection each
(as a probe does); p50 and p99 are of those 1,000, per repeat. RSS: after 1,000 requests of
warm-up, 100,000 requests from 20 threads (a kept-alive connection each, reopened every 50
requests, half of them to /metrics); the server's RSS before and after, read with psutil.
"""

from __future__ import annotations

import http.client
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil

PY = sys.executable
MB = 1024 * 1024
CLIENTS = 20


def start() -> tuple[subprocess.Popen[str], str, int]:
    argv = [PY, "-m", "memdiag", "serve", "--port", "0", "--interval", "1"]
    argv += ["--", PY, "-c", "import time; time.sleep(3600)"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    address = proc.stdout.readline().split("http://")[1].split("/")[0]
    host, port = address.split(":")
    return proc, host, int(port)


def probe(host: str, port: int) -> float:
    """Return the seconds one request on a new connection took (inf when unanswered)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", "/api/health/memory")
        response = connection.getresponse()
        response.read()
        ok = response.status == 200
    except OSError:
        ok = False
    finally:
        connection.close()
    return time.perf_counter() - started if ok else float("inf")


def latency(host: str, port: int) -> tuple[float, float, int]:
    """Return p50, p99 (s) and the unanswered count of 1,000 probes beside 10 stalled ones."""
    stalled = [socket.create_connection((host, port)) for _ in range(10)]
    for sock in stalled:
        sock.sendall(b"GET /api/hea")
    with ThreadPoolExecutor(CLIENTS) as pool:
        seconds = list(pool.map(lambda _: probe(host, port), range(1000)))
    for sock in stalled:
        sock.close()
    answered = [s for s in seconds if s != float("inf")]
    cuts = statistics.quantiles(answered, n=100)
    return cuts[49], cuts[98], len(seconds) - len(answered)


def flood(host: str, port: int, total: int) -> int:
    """Send `total` requests from CLIENTS threads; return how many were not a 200."""

    def client(count: int) -> int:
        failed, connection = 0, None
        for i in range(count):
            if i % 50 == 0:
                if connection is not None:
                    connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=5)
            path = "/metrics" if i % 2 else "/api/health/memory"
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            failed += response.status != 200
        if connection is not None:
            connection.close()
        return failed

    with ThreadPoolExecutor(CLIENTS) as pool:
        return sum(pool.map(client, [total // CLIENTS] * CLIENTS))


def run(repeats: int) -> str:
    proc, host, port = start()
    try:
        server = psutil.Process(proc.pid)
        flood(host, port, 1000)
        latencies = [latency(host, port) for _ in range(repeats)]
        before, started = server.memory_info().rss, time.monotonic()
        failed = flood(host, port, 100_000)
        elapsed, after = time.monotonic() - started, server.memory_info().rss
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    p50 = statistics.median(p for p, _, _ in latencies)
    p99s = [p for _, p, _ in latencies]
    unanswered = sum(u for _, _, u in latencies)
    return (
        "## memdiag serve\n\n"
        "`python benchmarks/run.py --only serve --out /tmp/serve.md`: the sidecar following a "
        "sleeping process; 10 stalled connections beside 1,000 requests from 20 threads (a new "
        f"connection each), {repeats} repeats; then 100,000 requests (kept-alive connections "
        "reopened every 50 requests, half to /metrics) after 1,000 of warm-up.\n\n"
        "| measure | value |\n| --- | --- |\n"
        f"| latency p50, median of repeats | {p50 * 1000:.1f} ms |\n"
        f"| latency p99, per repeat | {', '.join(f'{p * 1000:.1f}' for p in p99s)} ms |\n"
        f"| unanswered beside the stalled connections | {unanswered} of {1000 * repeats} |\n"
        f"| 100,000 requests: not 200 | {failed} |\n"
        f"| 100,000 requests: time | {elapsed:.0f} s ({100_000 / elapsed:.0f} requests/s) |\n"
        f"| server RSS before → after | {before / MB:.1f} → {after / MB:.1f} MB "
        f"(+{(after - before) / MB:.2f} MB) |\n"
    )
