"""A small HTTP service for the attach tests: it answers on 127.0.0.1 while its state grows.

`python service.py PORTFILE [leaky|fixed] [agent]`: GET /work records a request; the leaky
variant keeps every record id in the module global SEEN forever (the fixed one keeps the
last 100); a background thread sends itself requests every 20 ms. GET /state answers the
names of the threads and the memdiag modules loaded and whether tracemalloc runs.
With `agent`, the service runs `memdiag.agent.install()`.
"""

import json
import os
import sys
import threading
import time
import tracemalloc
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VARIANT = sys.argv[2] if len(sys.argv) > 2 else "leaky"
SEEN: "set[str] | deque[str]" = set() if VARIANT == "leaky" else deque(maxlen=100)
COUNT = [0]


def record() -> None:
    COUNT[0] += 1
    entry = f"record-{COUNT[0]:09d}-" + "x" * 200
    if isinstance(SEEN, set):
        SEEN.add(entry)
    else:
        SEEN.append(entry)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/work":
            for _ in range(50):
                record()
            body = b"ok"
        else:
            state = {
                "threads": sorted(t.name for t in threading.enumerate()),
                "memdiag_modules": sorted(m for m in sys.modules if m.startswith("memdiag")),
                "tracing": tracemalloc.is_tracing(),
                "count": COUNT[0],
                "own_site": os.environ.get("OWN_SITE"),
            }
            body = json.dumps(state).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def load(port: int) -> None:
    while True:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/work", timeout=10).read()
        time.sleep(0.02)


if __name__ == "__main__":
    if "agent" in sys.argv[3:]:
        import memdiag.agent

        memdiag.agent.install()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=load, args=(port,), name="load", daemon=True).start()
    with open(sys.argv[1] + ".tmp", "w") as out:
        out.write(str(port))
    import os

    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()
